//! Where each rank's stdout and stderr go for `--output`/`--error`: the files the patterns name
//! (opened once each, however many ranks share one), and whether a destination passes bytes
//! through or whole lines.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;

use crate::job::{JobSpec, LaunchError};
use crate::output::{self, DestinationId, LineAssembler, PatternVars};
use crate::ranks::RankOutput;

/// Every rank's destinations, and the files behind them.
#[derive(Debug)]
pub struct OutputRoutes {
    /// The files the patterns named: destinations 2, 3, ... in order (for the writer thread).
    pub files: Vec<File>,
    /// Per rank: (stdout, stderr).
    pub rank: Vec<(DestinationId, DestinationId)>,
    /// How many rank streams write to each destination.
    writers: HashMap<DestinationId, usize>,
    label: bool,
}

impl OutputRoutes {
    /// Opens (creates, and truncates unless `append_output`) every file the job's patterns name. `placement` (the node id
    /// of every rank and the nodes' names) gives `%n` and `%N` their rank's node; without it
    /// every rank runs here, on node 0.
    pub fn open(
        spec: &JobSpec,
        placement: Option<(&[u32], &[&str])>,
    ) -> Result<OutputRoutes, LaunchError> {
        let mut files = Vec::new();
        let mut by_path: HashMap<PathBuf, DestinationId> = HashMap::new();
        let mut rank = Vec::with_capacity(spec.ntasks as usize);
        let mut open = |pattern: &str, r: u32| -> Result<DestinationId, LaunchError> {
            let (node_id, host) = placement
                .and_then(|(of_rank, names)| {
                    let id = *of_rank.get(r as usize)?;
                    Some((id, *names.get(id as usize)?))
                })
                .unwrap_or((0, spec.host.as_str()));
            let vars =
                PatternVars { job_id: &spec.job_id, rank: r, node_id, host, user: &spec.user };
            let mut path = PathBuf::from(output::expand_pattern(pattern, &vars)?);
            if let Some(dir) = spec.cwd.as_ref().filter(|_| path.is_relative()) {
                path = dir.join(path);
            }
            if let Some(&dest) = by_path.get(&path) {
                return Ok(dest);
            }
            let file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .append(spec.append_output)
                .truncate(!spec.append_output)
                .open(&path)
                .map_err(|source| LaunchError::OutputFile { path: path.clone(), source })?;
            files.push(file);
            let dest = files.len() + 1;
            by_path.insert(path, dest);
            Ok(dest)
        };
        for r in 0..spec.ntasks {
            let out = match &spec.output {
                Some(p) => open(p, r)?,
                None => output::STDOUT,
            };
            let err = match (&spec.error, &spec.output) {
                (Some(p), _) => open(p, r)?,
                (None, Some(_)) => out,
                (None, None) => output::STDERR,
            };
            rank.push((out, err));
        }
        let mut writers = HashMap::new();
        for &(o, e) in &rank {
            *writers.entry(o).or_insert(0) += 1;
            *writers.entry(e).or_insert(0) += 1;
        }
        Ok(OutputRoutes { files, rank, writers, label: spec.label })
    }

    /// Where `rank`'s output goes, and how it is cut on the way.
    pub fn rank_output(&self, rank: u32) -> RankOutput {
        let (out, err) =
            self.rank.get(rank as usize).copied().unwrap_or((output::STDOUT, output::STDERR));
        RankOutput {
            stdout: (out, self.assembler(rank, out)),
            stderr: (err, self.assembler(rank, err)),
        }
    }

    /// Bytes pass through untouched where a rank writes alone and unlabelled; elsewhere whole
    /// lines, so no two ranks' output mixes within a line.
    fn assembler(&self, rank: u32, dest: DestinationId) -> LineAssembler {
        if self.label {
            LineAssembler::lines(Some(format!("{rank}: ")))
        } else if self.writers.get(&dest).copied().unwrap_or(0) <= 1 {
            LineAssembler::raw()
        } else {
            LineAssembler::lines(None)
        }
    }
}
