//! A signal as commands name it (`TERM`, `SIGTERM`, `15`), checked where it enters: `gangway
//! cancel --signal` refuses one this system does not have before anything is sent, and the
//! controller and agents only ever see valid signals.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A signal this system has. On the wire as its name (`SIGUSR1`); read from a name, with or
/// without `SIG`, or a number (what older commands sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal(nix::sys::signal::Signal);

impl Signal {
    /// `SIGTERM`: how a stop begins.
    pub const TERM: Signal = Signal(nix::sys::signal::Signal::SIGTERM);

    /// The signal for `nix` calls.
    pub fn get(self) -> nix::sys::signal::Signal {
        self.0
    }

    /// Its name, `SIGUSR1`.
    pub fn name(self) -> &'static str {
        self.0.as_str()
    }

    /// Its number.
    pub fn number(self) -> i32 {
        self.0 as i32
    }
}

/// No signal of that name or number (the command adds the flag and the value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    #[error("no such signal")]
    NoSuchNumber,
    #[error("no such signal (e.g. TERM, USR1, 10)")]
    NoSuchName,
}

impl FromStr for Signal {
    type Err = SignalError;

    fn from_str(s: &str) -> Result<Signal, SignalError> {
        if let Ok(n) = s.parse::<i32>() {
            return nix::sys::signal::Signal::try_from(n)
                .map(Signal)
                .map_err(|_| SignalError::NoSuchNumber);
        }
        let name = s.to_ascii_uppercase();
        let name = if name.starts_with("SIG") { name } else { format!("SIG{name}") };
        name.parse().map(Signal).map_err(|_| SignalError::NoSuchName)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Signal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Signal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Signal, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Given {
            Name(String),
            Number(i32),
        }
        let text = match Given::deserialize(d)? {
            Given::Name(s) => s,
            Given::Number(n) => n.to_string(),
        };
        text.parse().map_err(|e| serde::de::Error::custom(format!("signal {text}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_or_without_sig_and_numbers_parse() {
        for given in ["TERM", "term", "SIGTERM", "15"] {
            assert_eq!(given.parse::<Signal>(), Ok(Signal::TERM), "{given}");
        }
        assert_eq!("USR1".parse::<Signal>().map(Signal::number), Ok(libc::SIGUSR1));
    }

    #[test]
    fn unknown_signals_are_refused() {
        assert_eq!("BOGUS".parse::<Signal>(), Err(SignalError::NoSuchName));
        assert_eq!("999".parse::<Signal>(), Err(SignalError::NoSuchNumber));
        assert!(serde_json::from_str::<Signal>("\"BOGUS\"").is_err());
    }

    #[test]
    fn on_the_wire_as_a_name_and_read_from_a_name_or_a_number() {
        let usr1: Signal = "USR1".parse().expect("signal");
        assert_eq!(serde_json::to_string(&usr1).expect("json"), "\"SIGUSR1\"");
        assert_eq!(serde_json::from_str::<Signal>("\"USR1\"").expect("name"), usr1);
        assert_eq!(serde_json::from_str::<Signal>("10").expect("number"), usr1);
    }
}
