//! The name of the user running a command, as the controller records it for the jobs it submits.

/// The real uid's name from the password database (through NSS), else the uid as a number. Not
/// `$USER`, which `sudo` and `su` may carry over from another user.
pub fn current_user() -> String {
    let uid = nix::unistd::getuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}
