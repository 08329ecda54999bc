//! Sizes as Slurm's accounting prints them (`sacct` `MaxRSS`, `ReqMem`), pure: by default in
//! the largest unit that keeps the figure exact (a half counts as exact: `2.50G`), or in the
//! unit `--units=[KMGTP]` names, with two decimals where it is not whole.

use std::str::FromStr;

/// A unit of 1024 of the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Unit {
    None,
    Kilo,
    Mega,
    Giga,
    Tera,
    Peta,
}

const LETTERS: [&str; 6] = ["", "K", "M", "G", "T", "P"];
const ORDER: [Unit; 6] = [Unit::None, Unit::Kilo, Unit::Mega, Unit::Giga, Unit::Tera, Unit::Peta];

impl Unit {
    fn index(self) -> usize {
        ORDER.iter().position(|u| *u == self).unwrap_or(0)
    }
}

impl FromStr for Unit {
    type Err = String;

    /// `--units`' value: one of K, M, G, T, P (either case).
    fn from_str(s: &str) -> Result<Unit, String> {
        match s.to_ascii_uppercase().as_str() {
            "K" => Ok(Unit::Kilo),
            "M" => Ok(Unit::Mega),
            "G" => Ok(Unit::Giga),
            "T" => Ok(Unit::Tera),
            "P" => Ok(Unit::Peta),
            _ => Err(format!("--units={s}: write one of K, M, G, T, P")),
        }
    }
}

/// `value` (counted in `unit`) as sacct prints it: in `to` when given, else in the largest
/// unit that keeps it exact.
pub fn size(value: u64, unit: Unit, to: Option<Unit>) -> String {
    if value == 0 {
        return "0".into();
    }
    let mut num = value as f64;
    let mut at = unit.index();
    match to {
        Some(to) => {
            while at < to.index() {
                num /= 1024.0;
                at += 1;
            }
            while at > to.index() {
                num *= 1024.0;
                at -= 1;
            }
        }
        None => {
            // Slurm's test, on whole figures only: a half is never halved again (Slurm's
            // would print 1024.5M as a rounded 1.00G).
            while num >= 1024.0
                && num.fract() == 0.0
                && (num as u64).is_multiple_of(512)
                && at + 1 < LETTERS.len()
            {
                num /= 1024.0;
                at += 1;
            }
        }
    }
    let letter = LETTERS[at];
    if num.fract() == 0.0 { format!("{}{letter}", num as u64) } else { format!("{num:.2}{letter}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exact_unless_a_unit_is_asked_for() {
        assert_eq!(size(4096, Unit::Kilo, None), "4M");
        assert_eq!(size(2560, Unit::Mega, None), "2.50G");
        assert_eq!(size(1000, Unit::Kilo, None), "1000K");
        assert_eq!(size(1_224_720, Unit::Kilo, None), "1224720K");
        assert_eq!(size(0, Unit::Kilo, None), "0");
        assert_eq!(size(4096, Unit::Kilo, Some(Unit::Giga)), "0.00G");
        assert_eq!(size(1536, Unit::Kilo, Some(Unit::Mega)), "1.50M");
        assert_eq!(size(3, Unit::Mega, Some(Unit::Kilo)), "3072K");
        assert_eq!("g".parse::<Unit>(), Ok(Unit::Giga));
        assert!("X".parse::<Unit>().unwrap_err().contains("K, M, G, T, P"));
    }

    proptest! {
        #[test]
        fn printed_in_kilo_a_kilo_figure_is_itself(v in 1u64..u64::from(u32::MAX)) {
            prop_assert_eq!(size(v, Unit::Kilo, Some(Unit::Kilo)), format!("{v}K"));
        }

        #[test]
        fn the_exact_form_reads_back_to_the_figure(v in 1u64..(1u64 << 40)) {
            let s = size(v, Unit::Kilo, None);
            let (digits, letter) = s.split_at(s.len() - 1);
            let scale = 1u64 << (10 * LETTERS.iter().position(|l| *l == letter).unwrap_or(1).saturating_sub(1));
            let back = digits.parse::<f64>().unwrap() * scale as f64;
            prop_assert_eq!(back as u64, v);
        }
    }
}
