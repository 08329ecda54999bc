//! Tests of the reservation profile.
