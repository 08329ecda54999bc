//! GPU types: the short names users ask for (`--gres=gpu:k40m:1`, Slurm's gres.conf `Type=`)
//! and the one rule that derives a GPU's type from the model hwloc reports. A site that wants
//! other names renames them in the controller's configuration (docs/slurm.md, "Typed GPUs").

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A GPU type name: lower-case letters, digits, `_`, `.` and `-`, at most 64 characters, not a
/// plain number (`gpu:2` is a count). Compared exactly; parsing lower-cases, so users may write
/// `K40m`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GpuType(String);

/// Why a GPU type name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{0}' is not a GPU type name (letters, digits, '_', '.', '-', at most 64, not only digits; e.g. k40m or a100)"
)]
pub struct GpuTypeError(pub String);

impl GpuType {
    /// The name, lower-case.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The type of a GPU whose model hwloc reports as `model`: its first word holding a digit
    /// and a letter, up to a `-`, lower-cased ("Tesla K40m" → `k40m`, "NVIDIA A100-SXM4-40GB" → `a100`,
    /// "AMD Radeon R9 200 / HD 7900 Series" → `r9`, "NVIDIA H100 80GB HBM3" → `h100`). `None`
    /// when no word has both (a site names those in its configuration).
    pub fn of_model(model: &str) -> Option<GpuType> {
        model.split_whitespace().find_map(|word| {
            let head = word.split('-').next().unwrap_or(word);
            let name: String = head
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.'))
                .collect();
            let has = |f: fn(&char) -> bool| name.chars().any(|c| f(&c));
            (has(char::is_ascii_digit) && has(char::is_ascii_alphabetic))
                .then(|| name.parse().ok())
                .flatten()
        })
    }
}

impl FromStr for GpuType {
    type Err = GpuTypeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.to_ascii_lowercase();
        let valid_chars =
            name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if name.is_empty()
            || name.len() > 64
            || !valid_chars
            || name.chars().all(|c| c.is_ascii_digit())
        {
            return Err(GpuTypeError(s.to_string()));
        }
        Ok(GpuType(name))
    }
}

impl TryFrom<String> for GpuType {
    type Error = GpuTypeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<GpuType> for String {
    fn from(t: GpuType) -> String {
        t.0
    }
}

impl fmt::Display for GpuType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(model: &str) -> Option<String> {
        GpuType::of_model(model).map(String::from)
    }

    #[test]
    fn types_come_from_the_models_first_word_with_a_digit() {
        assert_eq!(of("Tesla K40m").as_deref(), Some("k40m"));
        assert_eq!(of("AMD Radeon R9 200 / HD 7900 Series").as_deref(), Some("r9"));
        assert_eq!(of("NVIDIA A100-SXM4-40GB").as_deref(), Some("a100"));
        assert_eq!(of("Tesla V100-PCIE-16GB").as_deref(), Some("v100"));
        assert_eq!(of("NVIDIA H100 80GB HBM3").as_deref(), Some("h100"));
        assert_eq!(of("AMD Instinct MI250X").as_deref(), Some("mi250x"));
        // A bare number is a count on the command line, never a type.
        assert_eq!(of("GeForce RTX 3090"), None);
        assert_eq!(of("Some GPU"), None);
        assert_eq!(of("Accelerator 3.5 1_0"), None, "a word needs a letter too");
    }

    #[test]
    fn names_are_case_insensitive_and_checked() {
        assert_eq!("K40m".parse::<GpuType>().unwrap().as_str(), "k40m");
        for bad in ["", "2", "a b", "k40m:1", &"x".repeat(65)] {
            assert!(bad.parse::<GpuType>().is_err(), "{bad:?}");
        }
        let json = serde_json::to_string(&"A100".parse::<GpuType>().unwrap()).unwrap();
        assert_eq!(json, "\"a100\"");
        assert!(serde_json::from_str::<GpuType>("\"no way\"").is_err());
    }
}
