//! The basics of OpenSSH's client config (`ssh_config(5)`) for the in-process ssh2 transport:
//! `Host` blocks, `Include`, and the options a launcher needs (HostName, User, Port,
//! IdentityFile, IdentitiesOnly, StrictHostKeyChecking, UserKnownHostsFile,
//! GlobalKnownHostsFile, ConnectTimeout), with ssh's first-value-wins rule.
//!
//! A small parser of our own rather than the `ssh2-config` crate: that crate keeps
//! StrictHostKeyChecking and the known_hosts files only as untyped leftovers, expands no `%`
//! tokens, and brings four more dependencies for the nine keywords used here. Anything this
//! parser does not understand (`Match` other than `Match all`, ProxyJump, ProxyCommand) is noted
//! so the ssh2 transport can refuse clearly and point at `--launcher openssh`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::BootstrapError;

/// What to do with a host key that is not on record (ssh's StrictHostKeyChecking).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostKeyPolicy {
    /// Refuse unknown and changed keys (ssh's `yes`, and `ask` in batch mode). The default.
    #[default]
    Strict,
    /// Record unknown keys in the first user known_hosts file; refuse changed ones.
    AcceptNew,
    /// Check nothing. Only for throwaway test networks.
    Off,
}

impl std::str::FromStr for HostKeyPolicy {
    type Err = String;

    /// Accepts our names (`strict`, `accept-new`, `off`) and ssh's (`yes`, `ask`, `no`).
    fn from_str(s: &str) -> Result<HostKeyPolicy, String> {
        match s.to_ascii_lowercase().as_str() {
            "strict" | "yes" | "ask" => Ok(HostKeyPolicy::Strict),
            "accept-new" => Ok(HostKeyPolicy::AcceptNew),
            "off" | "no" | "none" => Ok(HostKeyPolicy::Off),
            other => Err(format!(
                "unknown host key policy {other:?} (expected strict, accept-new or off)"
            )),
        }
    }
}

/// One option line as written, for first-wins resolution.
#[derive(Debug, Clone)]
struct Opt {
    key: String,
    args: Vec<String>,
}

/// A `Host` (or `Match`) block and its options, in file order.
#[derive(Debug, Clone)]
struct Block {
    /// (pattern, negated); empty for the options before the first `Host` line (they apply to all).
    patterns: Vec<(String, bool)>,
    /// `Match` other than `Match all`: never applied.
    unsupported_match: bool,
    opts: Vec<Opt>,
}

/// A parsed set of ssh config files.
#[derive(Debug, Clone, Default)]
pub struct SshConfig {
    blocks: Vec<Block>,
    home: PathBuf,
}

/// The options that apply to one host, with `~` and `%` tokens expanded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostConfig {
    /// The name to connect to (HostName), or the host as given.
    pub host_name: String,
    /// User, if set.
    pub user: Option<String>,
    /// Port, if set.
    pub port: Option<u16>,
    /// IdentityFile entries in order.
    pub identity_files: Vec<PathBuf>,
    /// IdentitiesOnly: use only the identity files, not every agent key.
    pub identities_only: bool,
    /// StrictHostKeyChecking, if set.
    pub host_key_policy: Option<HostKeyPolicy>,
    /// UserKnownHostsFile, if set (the first is where accept-new records keys).
    pub user_known_hosts: Option<Vec<PathBuf>>,
    /// GlobalKnownHostsFile, if set.
    pub global_known_hosts: Option<Vec<PathBuf>>,
    /// ConnectTimeout, if set.
    pub connect_timeout: Option<Duration>,
    /// ProxyJump or ProxyCommand: needs the openssh transport.
    pub proxy: Option<String>,
}

const MAX_INCLUDE_DEPTH: usize = 16;

impl SshConfig {
    /// Reads `explicit` alone (like `ssh -F`), or else `~/.ssh/config` then `/etc/ssh/ssh_config`,
    /// skipping those two when absent.
    pub fn load(explicit: Option<&Path>, home: &Path) -> Result<SshConfig, BootstrapError> {
        let mut cfg = SshConfig { blocks: Vec::new(), home: home.to_path_buf() };
        match explicit {
            Some(path) => cfg.read_file(path, true, 0)?,
            None => {
                cfg.read_file(&home.join(".ssh/config"), false, 0)?;
                cfg.read_file(Path::new("/etc/ssh/ssh_config"), false, 0)?;
            }
        }
        Ok(cfg)
    }

    /// Parses config text (as if read from `origin`, which relative `Include`s are taken against).
    pub fn parse_str(text: &str, origin: &Path, home: &Path) -> Result<SshConfig, BootstrapError> {
        let mut cfg = SshConfig { blocks: Vec::new(), home: home.to_path_buf() };
        cfg.parse_into(text, origin, 0)?;
        Ok(cfg)
    }

    fn read_file(
        &mut self,
        path: &Path,
        required: bool,
        depth: usize,
    ) -> Result<(), BootstrapError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(BootstrapError::Config {
                    path: path.to_path_buf(),
                    reason: format!("cannot read it: {e}"),
                });
            }
        };
        self.parse_into(&text, path, depth)
    }

    fn parse_into(
        &mut self,
        text: &str,
        origin: &Path,
        depth: usize,
    ) -> Result<(), BootstrapError> {
        if self.blocks.is_empty() {
            self.blocks.push(Block {
                patterns: Vec::new(),
                unsupported_match: false,
                opts: Vec::new(),
            });
        }
        for (i, raw) in text.lines().enumerate() {
            let err = |reason: String| BootstrapError::Config {
                path: origin.to_path_buf(),
                reason: format!("line {}: {reason}", i + 1),
            };
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, rest) = split_keyword(line);
            let key = key.to_ascii_lowercase();
            let args = split_args(rest).map_err(err)?;
            match key.as_str() {
                "host" => {
                    if args.is_empty() {
                        return Err(err("Host needs at least one pattern".into()));
                    }
                    let patterns = args
                        .iter()
                        .map(|a| match a.strip_prefix('!') {
                            Some(p) => (p.to_ascii_lowercase(), true),
                            None => (a.to_ascii_lowercase(), false),
                        })
                        .collect();
                    self.blocks.push(Block {
                        patterns,
                        unsupported_match: false,
                        opts: Vec::new(),
                    });
                }
                "match" => {
                    let all = args.len() == 1 && args[0].eq_ignore_ascii_case("all");
                    if !all {
                        tracing::debug!(file = %origin.display(), line = i + 1, "ssh config: Match blocks other than `Match all` are not applied by the ssh2 transport");
                    }
                    self.blocks.push(Block {
                        patterns: vec![("*".into(), false)],
                        unsupported_match: !all,
                        opts: Vec::new(),
                    });
                }
                "include" => {
                    if depth >= MAX_INCLUDE_DEPTH {
                        return Err(err("Include nested too deeply (a loop?)".into()));
                    }
                    for pattern in &args {
                        for file in self.include_targets(pattern, origin) {
                            self.read_file(&file, false, depth + 1)?;
                        }
                    }
                }
                _ => {
                    if let Some(b) = self.blocks.last_mut() {
                        b.opts.push(Opt { key, args });
                    }
                }
            }
        }
        Ok(())
    }

    /// The files an `Include` names: `~` expanded, relative to `~/.ssh` (or `/etc/ssh` for the
    /// system file), `*`/`?` globbing in the last component only.
    fn include_targets(&self, pattern: &str, origin: &Path) -> Vec<PathBuf> {
        let expanded = expand_tilde(pattern, &self.home);
        let path = if expanded.is_absolute() {
            expanded
        } else if origin.starts_with("/etc/ssh") {
            Path::new("/etc/ssh").join(expanded)
        } else {
            self.home.join(".ssh").join(expanded)
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !name.contains(['*', '?']) {
            return vec![path];
        }
        let Some(dir) = path.parent() else {
            return Vec::new();
        };
        let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| wildcard_match(&name, &e.file_name().to_string_lossy()))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        found.sort();
        found
    }

    /// The options for `host` (as the user typed it). `local_user` and `remote_user`/`port`
    /// expand `%u`, `%r`, `%p` in paths.
    pub fn resolve(&self, host: &str, local_user: &str) -> HostConfig {
        let lhost = host.to_ascii_lowercase();
        let mut first: Vec<(&str, &[String])> = Vec::new();
        let mut identity: Vec<&str> = Vec::new();
        for b in &self.blocks {
            if b.unsupported_match || !block_applies(&b.patterns, &lhost) {
                continue;
            }
            for o in &b.opts {
                if o.key == "identityfile" {
                    identity.extend(o.args.iter().map(String::as_str));
                } else if !first.iter().any(|(k, _)| *k == o.key) {
                    first.push((&o.key, &o.args));
                }
            }
        }
        let get = |k: &str| -> Option<&[String]> {
            first.iter().find(|(key, _)| *key == k).map(|(_, a)| *a)
        };
        let one = |k: &str| get(k).and_then(|a| a.first()).cloned();

        let host_name = one("hostname").map_or_else(|| host.to_string(), |h| h.replace("%h", host));
        let user = one("user");
        let port = one("port").and_then(|p| p.parse::<u16>().ok()).filter(|p| *p != 0);
        let tokens = Tokens {
            home: &self.home,
            local_user,
            host_name: &host_name,
            alias: host,
            remote_user: user.as_deref().unwrap_or(local_user),
            port: port.unwrap_or(22),
        };
        let paths = |k: &str| {
            get(k).map(|a| {
                a.iter()
                    .filter(|p| !p.eq_ignore_ascii_case("none"))
                    .map(|p| tokens.expand(p))
                    .collect::<Vec<_>>()
            })
        };
        HostConfig {
            identity_files: identity
                .iter()
                .filter(|p| !p.eq_ignore_ascii_case("none"))
                .map(|p| tokens.expand(p))
                .collect(),
            identities_only: one("identitiesonly").is_some_and(|v| v.eq_ignore_ascii_case("yes")),
            host_key_policy: one("stricthostkeychecking").and_then(|v| v.parse().ok()),
            user_known_hosts: paths("userknownhostsfile"),
            global_known_hosts: paths("globalknownhostsfile"),
            connect_timeout: one("connecttimeout")
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|s| *s > 0)
                .map(Duration::from_secs),
            proxy: one("proxyjump")
                .filter(|v| !v.eq_ignore_ascii_case("none"))
                .map(|v| format!("ProxyJump {v}"))
                .or_else(|| {
                    get("proxycommand")
                        .filter(|a| !a.first().is_some_and(|v| v.eq_ignore_ascii_case("none")))
                        .map(|a| format!("ProxyCommand {}", a.join(" ")))
                }),
            host_name,
            user,
            port,
        }
    }
}

struct Tokens<'a> {
    home: &'a Path,
    local_user: &'a str,
    host_name: &'a str,
    alias: &'a str,
    remote_user: &'a str,
    port: u16,
}

impl Tokens<'_> {
    fn expand(&self, raw: &str) -> PathBuf {
        let mut out = String::new();
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('%') => out.push('%'),
                Some('d') => out.push_str(&self.home.to_string_lossy()),
                Some('u') => out.push_str(self.local_user),
                Some('h') => out.push_str(self.host_name),
                Some('n') => out.push_str(self.alias),
                Some('r') => out.push_str(self.remote_user),
                Some('p') => out.push_str(&self.port.to_string()),
                // Unknown tokens stay as written, so the error message shows what was meant.
                Some(other) => {
                    out.push('%');
                    out.push(other);
                }
                None => out.push('%'),
            }
        }
        expand_tilde(&out, self.home)
    }
}

fn expand_tilde(p: &str, home: &Path) -> PathBuf {
    match p.strip_prefix('~') {
        Some("") => home.to_path_buf(),
        Some(rest) if rest.starts_with('/') => home.join(rest.trim_start_matches('/')),
        _ => PathBuf::from(p),
    }
}

/// `Key value`, `Key=value` or `Key = value`.
fn split_keyword(line: &str) -> (&str, &str) {
    let end = line.find(|c: char| c.is_whitespace() || c == '=').unwrap_or(line.len());
    let (key, rest) = line.split_at(end);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
    (key, rest)
}

/// White-space separated arguments; double quotes group (and are removed).
fn split_args(rest: &str) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut has = false;
    for c in rest.chars() {
        match c {
            '"' => {
                in_quotes = !in_quotes;
                has = true;
            }
            c if c.is_whitespace() && !in_quotes => {
                if has {
                    args.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            c => {
                cur.push(c);
                has = true;
            }
        }
    }
    if in_quotes {
        return Err("unbalanced double quote".into());
    }
    if has {
        args.push(cur);
    }
    Ok(args)
}

fn block_applies(patterns: &[(String, bool)], host: &str) -> bool {
    if patterns.is_empty() {
        return true;
    }
    let mut positive = false;
    for (p, negated) in patterns {
        if wildcard_match(p, host) {
            if *negated {
                return false;
            }
            positive = true;
        }
    }
    positive
}

/// ssh's patterns: `*` any run, `?` one character.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const VCLUSTER: &str = "# generated
Host node1
  HostName 10.77.0.1
Host node2
  HostName 10.77.0.2
Host *
  User gwtest
  IdentityFile /run/gangway-vcluster/gw/id_ed25519
  IdentitiesOnly yes
  UserKnownHostsFile /run/gangway-vcluster/gw/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking accept-new
  BatchMode yes
  ConnectTimeout 3
";

    fn parse(text: &str) -> SshConfig {
        SshConfig::parse_str(text, Path::new("/x/config"), Path::new("/home/me")).expect("parses")
    }

    #[test]
    fn vcluster_config() {
        let c = parse(VCLUSTER).resolve("node2", "root");
        assert_eq!(c.host_name, "10.77.0.2");
        assert_eq!(c.user.as_deref(), Some("gwtest"));
        assert_eq!(c.port, None);
        assert_eq!(c.identity_files, vec![PathBuf::from("/run/gangway-vcluster/gw/id_ed25519")]);
        assert!(c.identities_only);
        assert_eq!(c.host_key_policy, Some(HostKeyPolicy::AcceptNew));
        assert_eq!(
            c.user_known_hosts,
            Some(vec![PathBuf::from("/run/gangway-vcluster/gw/known_hosts")])
        );
        assert_eq!(c.global_known_hosts, Some(vec![PathBuf::from("/dev/null")]));
        assert_eq!(c.connect_timeout, Some(Duration::from_secs(3)));
        assert_eq!(c.proxy, None);
        // Not listed: falls through to `Host *`, keeps its own name.
        assert_eq!(parse(VCLUSTER).resolve("node9", "root").host_name, "node9");
    }

    #[test]
    fn first_value_wins_and_identity_files_accumulate() {
        let c = parse(
            "User top
Host web* !web3
  User=alice
  Port = 2222
  IdentityFile ~/.ssh/web_%r_%h
Host *
  User bob
  Port 22
  IdentityFile \"%d/.ssh/with space\"
  HostName %h.example.org
",
        );
        let w = c.resolve("web1", "me");
        assert_eq!(w.user.as_deref(), Some("top"));
        assert_eq!(w.port, Some(2222));
        assert_eq!(w.host_name, "web1.example.org");
        assert_eq!(
            w.identity_files,
            vec![
                PathBuf::from("/home/me/.ssh/web_top_web1.example.org"),
                PathBuf::from("/home/me/.ssh/with space"),
            ]
        );
        let w3 = c.resolve("web3", "me");
        assert_eq!(w3.port, Some(22), "negated pattern excludes web3");
    }

    #[test]
    fn policies_proxies_and_match() {
        let c = parse(
            "Match exec \"true\"
  User never
Host a
  StrictHostKeyChecking no
  ProxyJump bastion
Host b
  StrictHostKeyChecking yes
  ProxyCommand ssh -W %h:%p gw
Match all
  ConnectTimeout 7
",
        );
        let a = c.resolve("a", "me");
        assert_eq!(a.user, None, "unsupported Match is skipped");
        assert_eq!(a.host_key_policy, Some(HostKeyPolicy::Off));
        assert_eq!(a.proxy.as_deref(), Some("ProxyJump bastion"));
        assert_eq!(a.connect_timeout, Some(Duration::from_secs(7)));
        let b = c.resolve("b", "me");
        assert_eq!(b.host_key_policy, Some(HostKeyPolicy::Strict));
        assert!(b.proxy.as_deref().is_some_and(|p| p.starts_with("ProxyCommand ssh -W")));
    }

    #[test]
    fn bad_config_names_file_and_line() {
        let err =
            SshConfig::parse_str("Host a\n  User \"x\n", Path::new("/x/cfg"), Path::new("/h"))
                .expect_err("unbalanced");
        assert_eq!(err.to_string(), "ssh config /x/cfg: line 2: unbalanced double quote");
        assert!(SshConfig::load(Some(Path::new("/no/such/cfg")), Path::new("/h")).is_err());
    }

    #[test]
    fn include_with_glob() {
        let dir = std::env::temp_dir().join(format!("gw-sshcfg-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("conf.d")).expect("mkdir");
        std::fs::write(dir.join("conf.d/10-a.conf"), "Host inc\n  Port 2200\n").expect("write");
        std::fs::write(dir.join("conf.d/skip.txt"), "Host inc\n  Port 1\n").expect("write");
        let main = format!("Include {}/conf.d/*.conf\nHost *\n  Port 9\n", dir.display());
        let c = parse(&main);
        assert_eq!(c.resolve("inc", "me").port, Some(2200));
        assert_eq!(c.resolve("other", "me").port, Some(9));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match("node?", "node1"));
        assert!(!wildcard_match("node?", "node10"));
        assert!(wildcard_match("*.example.org", "a.b.example.org"));
        assert!(wildcard_match("a*b*c", "aXbYbc"));
        assert!(!wildcard_match("a*b", "ac"));
    }

    #[test]
    fn policy_names() {
        assert_eq!("accept-new".parse(), Ok(HostKeyPolicy::AcceptNew));
        assert_eq!("ask".parse(), Ok(HostKeyPolicy::Strict));
        assert_eq!("off".parse(), Ok(HostKeyPolicy::Off));
        assert!("maybe".parse::<HostKeyPolicy>().is_err());
    }
}
