//! `CpuSet`: a compact bitset of CPU (or NUMA node) indexes, with the Linux list syntax
//! (`0-3,8,10-11`) and hex masks (`0xff`, the kernel's `ffffffff,00000003`) in both directions.

use std::fmt;
use std::ops::{BitAndAssign, BitOrAssign, SubAssign};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Words kept inline: 256 CPUs cover nearly every node today without a heap allocation, which
/// matters when placement builds one set per rank for 10,000 nodes.
const INLINE_WORDS: usize = 4;

/// Highest CPU index accepted when parsing text. Parsing must not let a typo like
/// `0-4000000000` allocate gigabytes; no machine has a million CPUs in one OS image.
pub const MAX_PARSED_CPU: u32 = (1 << 20) - 1;

/// A set of CPU indexes (OS numbering, as the kernel and `sched_setaffinity` use them).
///
/// Also used for sets of NUMA node indexes ([`NodeSet`]) and other small index sets.
/// Formats as the Linux list syntax; parses the list syntax ([`FromStr`]) or hex masks
/// ([`CpuSet::parse_mask`]).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CpuSet {
    /// Bits 0..256.
    inline: [u64; INLINE_WORDS],
    /// Bits 256.. in 64-bit words; `None` or ending in a non-zero word, so derived equality
    /// holds. A boxed slice keeps the set at 40 bytes: placement stores four per rank.
    spill: Option<Box<[u64]>>,
}

/// A set of NUMA node OS indexes; same representation and syntax as [`CpuSet`].
pub type NodeSet = CpuSet;

/// Why a CPU list or mask could not be parsed; names the offending token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CPU set '{input}': bad token '{token}': {reason}")]
pub struct CpuSetParseError {
    /// The whole input.
    pub input: String,
    /// The part of the input that was rejected.
    pub token: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Default for CpuSet {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl CpuSet {
    /// The empty set, as a constant: the derived `Default` zeroed a temporary and copied it,
    /// and the copy stalled on store forwarding once per set built (four per placed rank).
    const EMPTY: Self = Self { inline: [0; INLINE_WORDS], spill: None };

    /// The empty set.
    pub fn new() -> Self {
        Self::EMPTY
    }

    /// A set holding `0..n`.
    pub fn with_first(n: u32) -> Self {
        let mut s = Self::new();
        s.insert_range(0, n);
        s
    }

    fn spill(&self) -> &[u64] {
        self.spill.as_deref().unwrap_or(&[])
    }

    fn word(&self, i: usize) -> u64 {
        match self.inline.get(i) {
            Some(&w) => w,
            None => self.spill().get(i - INLINE_WORDS).copied().unwrap_or(0),
        }
    }

    fn word_mut(&mut self, i: usize) -> &mut u64 {
        if i < INLINE_WORDS {
            return &mut self.inline[i];
        }
        let j = i - INLINE_WORDS;
        // Box<[u64]> <-> Vec<u64> conversions reuse the allocation; only growth reallocates.
        let mut v: Vec<u64> = self.spill.take().map(Vec::from).unwrap_or_default();
        if v.len() <= j {
            v.resize(j + 1, 0);
        }
        &mut self.spill.insert(v.into_boxed_slice())[j]
    }

    fn nwords(&self) -> usize {
        INLINE_WORDS + self.spill().len()
    }

    fn trim(&mut self) {
        let keep = self.spill().iter().rposition(|&w| w != 0).map_or(0, |p| p + 1);
        if keep != self.spill().len() {
            self.spill = (keep > 0).then(|| self.spill().get(..keep).unwrap_or(&[]).into());
        }
    }

    /// Adds `cpu`.
    pub fn insert(&mut self, cpu: u32) {
        let c = cpu as usize;
        let bit = 1u64 << (c % 64);
        match self.inline.get_mut(c / 64) {
            Some(w) => *w |= bit,
            None => *self.word_mut(c / 64) |= bit,
        }
    }

    /// Adds every CPU in `start..end`.
    pub fn insert_range(&mut self, start: u32, end: u32) {
        // Word at a time: ranges of a few hundred CPUs are built per rank in the hot path.
        let mut c = start as usize;
        let end = end as usize;
        while c < end {
            let bit = c % 64;
            let n = (64 - bit).min(end - c);
            let mask = if n == 64 { u64::MAX } else { ((1u64 << n) - 1) << bit };
            *self.word_mut(c / 64) |= mask;
            c += n;
        }
    }

    /// Removes `cpu`.
    pub fn remove(&mut self, cpu: u32) {
        let c = cpu as usize;
        if c / 64 < self.nwords() {
            *self.word_mut(c / 64) &= !(1u64 << (c % 64));
            self.trim();
        }
    }

    /// Whether `cpu` is in the set.
    pub fn contains(&self, cpu: u32) -> bool {
        let c = cpu as usize;
        self.word(c / 64) & (1u64 << (c % 64)) != 0
    }

    /// Number of CPUs in the set.
    pub fn len(&self) -> usize {
        self.inline.iter().chain(self.spill()).map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.inline.iter().all(|&w| w == 0) && self.spill.is_none()
    }

    /// Lowest CPU in the set.
    pub fn first(&self) -> Option<u32> {
        self.iter().next()
    }

    /// Highest CPU in the set.
    pub fn last(&self) -> Option<u32> {
        (0..self.nwords()).rev().find_map(|i| {
            let w = self.word(i);
            (w != 0).then(|| (i * 64 + 63 - w.leading_zeros() as usize) as u32)
        })
    }

    /// The CPUs in increasing order.
    pub fn iter(&self) -> Iter<'_> {
        Iter { set: self, word: 0, bits: self.word(0) }
    }

    /// Whether the two sets share a CPU.
    pub fn intersects(&self, other: &Self) -> bool {
        self.inline.iter().zip(&other.inline).any(|(a, b)| a & b != 0)
            || self.spill().iter().zip(other.spill()).any(|(a, b)| a & b != 0)
    }

    /// Whether every CPU of `self` is in `other`.
    pub fn is_subset(&self, other: &Self) -> bool {
        (0..self.nwords()).all(|i| self.word(i) & !other.word(i) == 0)
    }

    /// `self ∪ other`.
    pub fn union(&self, other: &Self) -> Self {
        let mut s = self.clone();
        s |= other;
        s
    }

    /// `self ∩ other`.
    pub fn intersection(&self, other: &Self) -> Self {
        let mut inline = [0u64; INLINE_WORDS];
        for ((o, a), b) in inline.iter_mut().zip(&self.inline).zip(&other.inline) {
            *o = a & b;
        }
        let mut s = Self { inline, spill: None };
        if self.spill.is_some() && other.spill.is_some() {
            let words: Vec<u64> =
                self.spill().iter().zip(other.spill()).map(|(a, b)| a & b).collect();
            s.spill = Some(words.into_boxed_slice());
            s.trim();
        }
        s
    }

    /// Makes `self` the intersection `a ∩ b`, written in place: building a set elsewhere and
    /// moving it in goes through the stack, which placement's per-core loop felt.
    pub(crate) fn assign_intersection(&mut self, a: &Self, b: &Self) {
        for ((o, x), y) in self.inline.iter_mut().zip(&a.inline).zip(&b.inline) {
            *o = x & y;
        }
        if self.spill.is_some() || (a.spill.is_some() && b.spill.is_some()) {
            let words: Vec<u64> = a.spill().iter().zip(b.spill()).map(|(x, y)| x & y).collect();
            self.spill = Some(words.into_boxed_slice());
            self.trim();
        }
    }

    /// `self \ other`.
    pub fn difference(&self, other: &Self) -> Self {
        let mut s = self.clone();
        s -= other;
        s
    }

    /// The set as 64-bit words, bit `i` of word `w` being CPU `64*w + i` (the layout of a
    /// `cpu_set_t`); trailing zero words dropped.
    pub fn to_words(&self) -> Vec<u64> {
        let mut v: Vec<u64> = (0..self.nwords()).map(|i| self.word(i)).collect();
        while v.last() == Some(&0) {
            v.pop();
        }
        v
    }

    /// Builds a set from 64-bit words laid out as in [`CpuSet::to_words`].
    pub fn from_words(words: &[u64]) -> Self {
        let mut s = Self::new();
        for (i, &w) in words.iter().enumerate() {
            if w != 0 {
                *s.word_mut(i) = w;
            }
        }
        s
    }

    /// The Linux list syntax, e.g. `0-3,8,10-11`; empty string for the empty set.
    pub fn to_list_string(&self) -> String {
        self.to_string()
    }

    /// A single hex mask with `0x` prefix (`0xf0f`), as Slurm's `mask_cpu` and `taskset` take.
    pub fn to_hex_mask(&self) -> String {
        let words = self.to_words();
        let Some((top, rest)) = words.split_last() else {
            return "0x0".to_owned();
        };
        let mut s = format!("0x{top:x}");
        for w in rest.iter().rev() {
            s.push_str(&format!("{w:016x}"));
        }
        s
    }

    /// The kernel's comma-grouped mask (`Cpus_allowed` in `/proc/PID/status`): 32-bit groups,
    /// most significant first, e.g. `ffffffff,00000003`.
    pub fn to_kernel_mask(&self) -> String {
        let words = self.to_words();
        let mut groups: Vec<u32> =
            words.iter().flat_map(|&w| [w as u32, (w >> 32) as u32]).collect();
        while groups.len() > 1 && groups.last() == Some(&0) {
            groups.pop();
        }
        if groups.is_empty() {
            groups.push(0);
        }
        groups.iter().rev().map(|g| format!("{g:08x}")).collect::<Vec<_>>().join(",")
    }

    /// Parses the Linux list syntax: comma-separated CPUs and ranges `a-b`, optionally with a
    /// stride `a-b:s`. Whitespace around the input (sysfs files end in a newline) is ignored.
    pub fn parse_list(input: &str) -> Result<Self, CpuSetParseError> {
        let err = |token: &str, reason: &str| CpuSetParseError {
            input: input.to_owned(),
            token: token.to_owned(),
            reason: reason.to_owned(),
        };
        let num = |token: &str, part: &str| -> Result<u32, CpuSetParseError> {
            let v: u32 = part
                .trim()
                .parse()
                .map_err(|_| err(token, "expected a CPU number, a range a-b or a-b:stride"))?;
            if v > MAX_PARSED_CPU {
                return Err(err(token, &format!("CPU {v} is above the limit {MAX_PARSED_CPU}")));
            }
            Ok(v)
        };
        let mut set = Self::new();
        let text = input.trim();
        if text.is_empty() {
            return Ok(set);
        }
        for token in text.split(',') {
            let (range, stride) = match token.split_once(':') {
                Some((r, s)) => (r, Some(s)),
                None => (token, None),
            };
            let (lo, hi) = match range.split_once('-') {
                Some((a, b)) => (num(token, a)?, num(token, b)?),
                None => {
                    if stride.is_some() {
                        return Err(err(token, "a stride needs a range a-b:stride"));
                    }
                    let v = num(token, range)?;
                    (v, v)
                }
            };
            if lo > hi {
                return Err(err(token, "range start is above its end"));
            }
            let step = match stride {
                Some(s) => {
                    let s: u32 = s.trim().parse().map_err(|_| err(token, "bad stride"))?;
                    if s == 0 {
                        return Err(err(token, "stride must be at least 1"));
                    }
                    s
                }
                None => 1,
            };
            if step == 1 {
                set.insert_range(lo, hi + 1);
            } else {
                let mut c = lo;
                while c <= hi {
                    set.insert(c);
                    c = match c.checked_add(step) {
                        Some(n) => n,
                        None => break,
                    };
                }
            }
        }
        Ok(set)
    }

    /// Parses a hex mask: `0xff`, `ff`, or comma-grouped 32-bit words most significant first
    /// (`ffffffff,00000003`, each group optionally `0x`-prefixed, as hwloc writes them).
    pub fn parse_mask(input: &str) -> Result<Self, CpuSetParseError> {
        let err = |token: &str, reason: &str| CpuSetParseError {
            input: input.to_owned(),
            token: token.to_owned(),
            reason: reason.to_owned(),
        };
        let text = input.trim();
        if text.is_empty() {
            return Err(err(text, "empty mask"));
        }
        let groups: Vec<&str> = text.split(',').collect();
        let grouped = groups.len() > 1;
        // Collect nibbles least significant first; each group holds 32 bits when grouped.
        let mut nibbles: Vec<u8> = Vec::new();
        for token in groups.iter().rev() {
            let t = token.trim();
            let hex = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
            if hex.is_empty() {
                return Err(err(token, "empty hex group"));
            }
            if grouped && hex.len() > 8 {
                return Err(err(token, "a comma-separated group holds at most 8 hex digits"));
            }
            let mut group: Vec<u8> = Vec::with_capacity(8);
            for ch in hex.chars().rev() {
                let d = ch.to_digit(16).ok_or_else(|| err(token, "not a hex digit"))?;
                group.push(d as u8);
            }
            if grouped {
                group.resize(8, 0);
            }
            nibbles.extend(group);
        }
        while nibbles.last() == Some(&0) {
            nibbles.pop();
        }
        if nibbles.len() * 4 > MAX_PARSED_CPU as usize + 1 {
            return Err(err(text, &format!("mask is wider than {} CPUs", MAX_PARSED_CPU + 1)));
        }
        let mut set = Self::new();
        for (i, &n) in nibbles.iter().enumerate() {
            if n != 0 {
                *set.word_mut(i / 16) |= u64::from(n) << ((i % 16) * 4);
            }
        }
        Ok(set)
    }

    /// Parses either form: a `0x`-prefixed mask or the list syntax.
    pub fn parse_any(input: &str) -> Result<Self, CpuSetParseError> {
        let t = input.trim();
        if t.starts_with("0x") || t.starts_with("0X") {
            Self::parse_mask(t)
        } else {
            Self::parse_list(t)
        }
    }
}

/// Iterator over the CPUs of a [`CpuSet`] in increasing order.
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    set: &'a CpuSet,
    word: usize,
    bits: u64,
}

impl Iterator for Iter<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        loop {
            if self.bits != 0 {
                let b = self.bits.trailing_zeros();
                self.bits &= self.bits - 1;
                return Some((self.word * 64) as u32 + b);
            }
            self.word += 1;
            if self.word >= self.set.nwords() {
                return None;
            }
            self.bits = self.set.word(self.word);
        }
    }
}

impl<'a> IntoIterator for &'a CpuSet {
    type Item = u32;
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl FromIterator<u32> for CpuSet {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> Self {
        let mut s = Self::new();
        s.extend(iter);
        s
    }
}

impl Extend<u32> for CpuSet {
    fn extend<I: IntoIterator<Item = u32>>(&mut self, iter: I) {
        for c in iter {
            self.insert(c);
        }
    }
}

impl BitOrAssign<&CpuSet> for CpuSet {
    fn bitor_assign(&mut self, rhs: &CpuSet) {
        for (a, b) in self.inline.iter_mut().zip(&rhs.inline) {
            *a |= b;
        }
        for i in INLINE_WORDS..rhs.nwords() {
            let w = rhs.word(i);
            if w != 0 {
                *self.word_mut(i) |= w;
            }
        }
    }
}

impl BitAndAssign<&CpuSet> for CpuSet {
    fn bitand_assign(&mut self, rhs: &CpuSet) {
        for (a, b) in self.inline.iter_mut().zip(&rhs.inline) {
            *a &= b;
        }
        if self.spill.is_some() {
            for i in INLINE_WORDS..self.nwords() {
                let w = rhs.word(i);
                *self.word_mut(i) &= w;
            }
            self.trim();
        }
    }
}

impl SubAssign<&CpuSet> for CpuSet {
    fn sub_assign(&mut self, rhs: &CpuSet) {
        for (a, b) in self.inline.iter_mut().zip(&rhs.inline) {
            *a &= !b;
        }
        if self.spill.is_some() && rhs.spill.is_some() {
            for i in INLINE_WORDS..self.nwords().min(rhs.nwords()) {
                let w = rhs.word(i);
                *self.word_mut(i) &= !w;
            }
            self.trim();
        }
    }
}

impl fmt::Display for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut it = self.iter().peekable();
        let mut first = true;
        while let Some(start) = it.next() {
            let mut end = start;
            while it.peek() == Some(&(end + 1)) {
                end += 1;
                it.next();
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CpuSet({self})")
    }
}

impl FromStr for CpuSet {
    type Err = CpuSetParseError;
    /// The list syntax; use [`CpuSet::parse_mask`] or [`CpuSet::parse_any`] for masks.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_list(s)
    }
}

impl Serialize for CpuSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CpuSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse_list(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn list_round_trip() {
        let s: CpuSet = "0-3,8,10-11".parse().unwrap();
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 1, 2, 3, 8, 10, 11]);
        assert_eq!(s.to_string(), "0-3,8,10-11");
        assert_eq!(CpuSet::parse_list(" 5\n").unwrap().to_string(), "5");
        assert_eq!(CpuSet::parse_list("").unwrap(), CpuSet::new());
        assert_eq!(CpuSet::parse_list("0-8:4").unwrap().to_string(), "0,4,8");
    }

    #[test]
    fn masks() {
        assert_eq!(CpuSet::parse_mask("0xff").unwrap().to_string(), "0-7");
        assert_eq!(CpuSet::parse_mask("f0").unwrap().to_string(), "4-7");
        let k = CpuSet::parse_mask("ffffffff,00000003").unwrap();
        assert_eq!(k.to_string(), "0-1,32-63");
        assert_eq!(k.to_kernel_mask(), "ffffffff,00000003");
        assert_eq!(k.to_hex_mask(), "0xffffffff00000003");
        assert_eq!(
            CpuSet::parse_mask("0x00000001,0x0000f06f").unwrap().to_string(),
            "0-3,5-6,12-15,32"
        );
        assert_eq!(CpuSet::new().to_hex_mask(), "0x0");
        assert_eq!(CpuSet::new().to_kernel_mask(), "00000000");
        assert_eq!(CpuSet::parse_any("0x3").unwrap().to_string(), "0-1");
        assert_eq!(CpuSet::parse_any("3").unwrap().to_string(), "3");
    }

    #[test]
    fn errors_name_the_token() {
        let e = CpuSet::parse_list("0-3,x,5").unwrap_err();
        assert_eq!(e.token, "x");
        assert!(e.to_string().contains("'x'"), "{e}");
        assert_eq!(CpuSet::parse_list("4-2").unwrap_err().token, "4-2");
        assert_eq!(CpuSet::parse_list("0-4000000000").unwrap_err().token, "0-4000000000");
        assert_eq!(CpuSet::parse_mask("0xfg").unwrap_err().token, "0xfg");
        assert_eq!(CpuSet::parse_mask("123456789,1").unwrap_err().token, "123456789");
        assert!(CpuSet::parse_mask("").is_err());
        assert!(CpuSet::parse_list("1,,2").is_err());
    }

    #[test]
    fn big_sets_and_ops() {
        let mut a = CpuSet::parse_list("0-1023").unwrap();
        assert_eq!(a.len(), 1024);
        assert_eq!(a.last(), Some(1023));
        let b = CpuSet::parse_list("512-2047").unwrap();
        assert_eq!(a.intersection(&b).to_string(), "512-1023");
        assert_eq!(a.union(&b).to_string(), "0-2047");
        a -= &b;
        assert_eq!(a.to_string(), "0-511");
        assert_eq!(a, CpuSet::with_first(512));
        assert!(a.is_subset(&CpuSet::with_first(600)));
        assert!(!a.intersects(&b));
        let mut c = CpuSet::parse_list("1000").unwrap();
        c.remove(1000);
        assert_eq!(c, CpuSet::new());
        assert!(c.is_empty());
    }

    proptest! {
        #[test]
        fn list_and_mask_round_trip(cpus in proptest::collection::btree_set(0u32..2000, 0..64)) {
            let s: CpuSet = cpus.iter().copied().collect();
            prop_assert_eq!(s.iter().collect::<Vec<_>>(), cpus.iter().copied().collect::<Vec<_>>());
            prop_assert_eq!(CpuSet::parse_list(&s.to_string()).unwrap(), s.clone());
            prop_assert_eq!(CpuSet::parse_mask(&s.to_hex_mask()).unwrap(), s.clone());
            prop_assert_eq!(CpuSet::parse_mask(&s.to_kernel_mask()).unwrap(), s.clone());
            prop_assert_eq!(CpuSet::from_words(&s.to_words()), s.clone());
            prop_assert_eq!(s.len(), cpus.len());
        }

        #[test]
        fn parsers_never_panic(text in "[0-9a-fx, :-]{0,24}") {
            let _ = CpuSet::parse_list(&text);
            let _ = CpuSet::parse_mask(&text);
        }
    }
}
