//! Text views for the CLI: `gangway topology` (a concise lstopo-like tree with counts) and
//! `gangway run --dry-run` (the rank → host → cores/PUs/NUMA/GPU map). JSON comes from serde.

use std::fmt::Write as _;

use crate::cpuset::CpuSet;
use crate::model::{DeviceKind, Topology};
use crate::placement::Placement;

/// Bytes as a short human size (`16 GiB`, `1.5 MiB`, `32 KiB`).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    let unit = UNITS.get(i).copied().unwrap_or("B");
    if (v - v.round()).abs() < 0.05 { format!("{v:.0} {unit}") } else { format!("{v:.1} {unit}") }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A concise tree: machine totals, then each package with its NUMA nodes (memory, cores, PUs),
/// CPU-less memory, GPUs and other devices.
pub fn render_tree(t: &Topology) -> String {
    let mut s = String::new();
    let counts = t.counts();
    let total_pus = t.pus.len();
    let allowed = if counts.pus == total_pus {
        String::new()
    } else {
        format!(" ({} allowed: {})", counts.pus, t.allowed_cpuset)
    };
    let _ = writeln!(
        s,
        "Machine: {}, {} ({}), {}, {}{}, {}",
        plural(t.packages.len(), "package", "packages"),
        plural(t.numa_nodes.len(), "NUMA node", "NUMA nodes"),
        memory_text(t.total_memory),
        plural(t.cores.len(), "core", "cores"),
        plural(total_pus, "PU", "PUs"),
        allowed,
        plural(t.gpus.len(), "GPU", "GPUs"),
    );
    let absent = t.complete_cpuset.difference(&t.online_cpuset);
    if !absent.is_empty() {
        let _ = writeln!(s, "  CPUs absent (offline or excluded from this topology): {absent}");
    }
    // NUMA nodes inside a package print under it; a NUMA node spanning whole packages (older
    // multi-socket machines) prints above them, so the tree reads top-down either way.
    let mut shown_numa = vec![false; t.numa_nodes.len()];
    let mut shown_pkg = vec![false; t.packages.len()];
    let outer: Vec<usize> = (0..t.numa_nodes.len())
        .filter(|&ni| !t.packages.iter().any(|p| p.numa_nodes.contains(&(ni as u32))))
        .collect();
    for pi in 0..t.packages.len() {
        if shown_pkg.get(pi).copied().unwrap_or(true) {
            continue;
        }
        let Some(p) = t.packages.get(pi) else { continue };
        let holder = outer.iter().copied().find(|&ni| {
            t.numa_nodes
                .get(ni)
                .is_some_and(|n| !n.cpuset.is_empty() && p.cpuset.is_subset(&n.cpuset))
        });
        match holder {
            Some(ni) => {
                let _ = writeln!(s, "  {}", numa_line(t, ni));
                if let Some(f) = shown_numa.get_mut(ni) {
                    *f = true;
                }
                let cpus = t.numa_nodes.get(ni).map_or_else(CpuSet::new, |n| n.cpuset.clone());
                for (qi, q) in t.packages.iter().enumerate() {
                    if !shown_pkg.get(qi).copied().unwrap_or(true) && q.cpuset.is_subset(&cpus) {
                        package_lines(&mut s, t, qi, "    ", &mut shown_numa);
                        if let Some(f) = shown_pkg.get_mut(qi) {
                            *f = true;
                        }
                    }
                }
            }
            None => {
                package_lines(&mut s, t, pi, "  ", &mut shown_numa);
                if let Some(f) = shown_pkg.get_mut(pi) {
                    *f = true;
                }
            }
        }
    }
    for (ni, shown) in shown_numa.iter().enumerate() {
        if !shown {
            let _ = writeln!(s, "  {}", numa_line(t, ni));
        }
    }
    for g in &t.gpus {
        let _ = writeln!(
            s,
            "  GPU {}{} ({}){}: near CPUs {}, NUMA {}",
            g.index,
            g.model.as_ref().map_or(String::new(), |m| format!(" {m}")),
            g.names.join(", "),
            g.pci_bus_id.as_ref().map_or(String::new(), |b| format!(" PCI {b}")),
            g.cpuset,
            g.numa_nodes
        );
    }
    let others: Vec<String> = t
        .devices
        .iter()
        .filter(|d| !matches!(d.kind, DeviceKind::Gpu | DeviceKind::CoProcessor))
        .map(|d| format!("{} ({})", d.name, kind_name(d.kind)))
        .collect();
    if !others.is_empty() {
        let _ = writeln!(s, "  Other devices: {}", others.join(", "));
    }
    s
}

fn package_lines(s: &mut String, t: &Topology, pi: usize, indent: &str, shown_numa: &mut [bool]) {
    let Some(p) = t.packages.get(pi) else { return };
    let pus: usize = p.cores.iter().map(|&c| t.pus_of_core(c as usize).len()).sum();
    let l3: Vec<&crate::model::Cache> = t
        .caches
        .iter()
        .filter(|c| c.level == 3 && !c.cpuset.is_empty() && c.cpuset.is_subset(&p.cpuset))
        .collect();
    let l3_text = match l3.first() {
        Some(c) if l3.len() == 1 => format!(", L3 {}", human_bytes(c.size)),
        Some(c) => format!(", {}x L3 {}", l3.len(), human_bytes(c.size)),
        None => String::new(),
    };
    let _ = writeln!(
        s,
        "{indent}Package L#{pi}{}: {}, {}{l3_text}, CPUs {}",
        p.os_index.map_or(String::new(), |o| format!(" P#{o}")),
        plural(p.cores.len(), "core", "cores"),
        plural(pus, "PU", "PUs"),
        p.cpuset
    );
    for &ni in &p.numa_nodes {
        if let Some(f) = shown_numa.get_mut(ni as usize) {
            *f = true;
            let _ = writeln!(s, "{indent}  {}", numa_line(t, ni as usize));
        }
    }
}

fn memory_text(bytes: u64) -> String {
    if bytes == 0 { "memory unknown".to_owned() } else { human_bytes(bytes) }
}

fn numa_line(t: &Topology, ni: usize) -> String {
    let Some(n) = t.numa_nodes.get(ni) else { return String::new() };
    let kind = n.subtype.as_ref().map_or(String::new(), |k| format!(" {k}"));
    if n.cpuset.is_empty() {
        return format!("NUMA L#{ni} P#{}{kind} ({}): no CPUs", n.os_index, memory_text(n.memory));
    }
    let pus: usize = n.cores.iter().map(|&c| t.pus_of_core(c as usize).len()).sum();
    format!(
        "NUMA L#{ni} P#{}{kind} ({}): {}, {}, CPUs {}",
        n.os_index,
        memory_text(n.memory),
        plural(n.cores.len(), "core", "cores"),
        plural(pus, "PU", "PUs"),
        n.cpuset
    )
}

fn kind_name(k: DeviceKind) -> &'static str {
    match k {
        DeviceKind::Gpu => "GPU",
        DeviceKind::CoProcessor => "co-processor",
        DeviceKind::Network => "network",
        DeviceKind::OpenFabrics => "OpenFabrics",
        DeviceKind::Storage => "storage",
        DeviceKind::Dma => "DMA",
        DeviceKind::Other => "other",
    }
}

fn cell(set: &CpuSet) -> String {
    if set.is_empty() { "-".to_owned() } else { set.to_string() }
}

/// The `--dry-run` table: one line per rank with host, cores, PUs, NUMA nodes, memory binding
/// and GPUs. `hosts[i]` names node `i` (missing names print as `node<i>`).
pub fn render_map(p: &Placement, hosts: &[&str]) -> String {
    let mut s = String::new();
    let nodes_used = p.tasks_per_node.iter().filter(|&&k| k > 0).count();
    let _ = writeln!(
        s,
        "{} on {}: cpu-bind={}, distribution={}, mem-bind={}, cpus counted as {}",
        plural(p.ranks.len(), "rank", "ranks"),
        plural(nodes_used, "node", "nodes"),
        p.cpu_bind,
        p.distribution,
        p.mem_bind,
        p.cpu_unit
    );
    for note in &p.notes {
        let _ = writeln!(s, "note: {note}");
    }
    let rows: Vec<[String; 7]> = p
        .ranks
        .iter()
        .map(|r| {
            let host = hosts
                .get(r.node as usize)
                .map_or_else(|| format!("node{}", r.node), |h| (*h).to_owned());
            let gpus = if r.binding.gpus.is_empty() {
                "-".to_owned()
            } else {
                r.binding.gpus.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
            };
            let mut pus = cell(&r.binding.cpus);
            if r.binding.unbound {
                pus.push_str(" (unbound)");
            } else if r.binding.oversubscribed {
                pus.push_str(" (shared)");
            }
            [
                r.rank.to_string(),
                host,
                cell(&r.binding.cores),
                pus,
                cell(&r.binding.numa),
                cell(&r.binding.mem_nodes),
                gpus,
            ]
        })
        .collect();
    let header = ["rank", "host", "cores", "PUs", "NUMA", "mem", "GPUs"];
    let mut width = header.map(str::len);
    for row in &rows {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(width).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ");
            }
        }
        l.trim_end().to_owned()
    };
    let _ = writeln!(s, "{}", line(&header));
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        let _ = writeln!(s, "{}", line(&cells));
    }
    s
}
