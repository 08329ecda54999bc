//! The machine model gangway places ranks on: hardware discovery and pure placement.
