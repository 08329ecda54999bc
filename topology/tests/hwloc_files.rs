//! Loads the real-machine XML exports and synthetic descriptions through hwloc and checks the
//! model's counts against hwloc's own command-line tools on the same input.

use std::path::{Path, PathBuf};
use std::process::Command;

use gangway_topology::{Topology, TopologyError, render_tree};

const FILES: [&str; 7] = [
    "16amd64-8n2c-cpusets.xml",
    "16em64t-4s2c2t-offlines.xml",
    "16em64t-4s2c2t.xml",
    "24em64t-2n6c2t-pci.xml",
    "32em64t-2n8c2t-pci-normalio.xml",
    "64intel64-fakeKNL-SNC4-hybrid.xml",
    "96em64t-4n4d3ca2co-pci.xml",
];

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// `hwloc-calc -i INPUT -N TYPE all`, or None (with a loud note) when the tool is missing.
fn hwloc_calc(input: &str, ty: &str) -> Option<usize> {
    let out = match Command::new("hwloc-calc").args(["-i", input, "-N", ty, "all"]).output() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("SKIPPED hwloc-calc comparison: hwloc-calc not runnable ({e})");
            return None;
        }
    };
    assert!(out.status.success(), "hwloc-calc failed on {input}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Count of lines in `lstopo --of console` output starting with `word` (after indentation and
/// `+` joins), the objects lstopo shows.
fn lstopo_count(input: &str, word: &str) -> Option<usize> {
    let out = match Command::new("lstopo-no-graphics")
        .args(["-i", input, "--of", "console", "--no-io"])
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("SKIPPED lstopo comparison: lstopo-no-graphics not runnable ({e})");
            return None;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    Some(
        text.lines()
            .flat_map(|l| l.split(" + "))
            .filter(|part| part.trim_start().starts_with(word))
            .count(),
    )
}

#[test]
fn counts_match_hwloc_calc_for_every_export() {
    for f in FILES {
        let path = data(f);
        let t = Topology::from_xml_file(&path).unwrap();
        let c = t.counts();
        let p = path.to_str().unwrap();
        let Some(pkgs) = hwloc_calc(p, "package") else { return };
        assert_eq!(c.packages, pkgs, "{f} packages");
        assert_eq!(Some(c.numa_nodes), hwloc_calc(p, "numa"), "{f} NUMA");
        assert_eq!(Some(c.cores), hwloc_calc(p, "core"), "{f} cores");
        assert_eq!(Some(c.pus), hwloc_calc(p, "pu"), "{f} PUs");
        assert_eq!(Some(c.os_devices), hwloc_calc(p, "osdev"), "{f} OS devices");
        // lstopo shows every NUMA node, including CPU-less ones hwloc-calc leaves out.
        assert_eq!(Some(t.numa_nodes.len()), lstopo_count(p, "NUMANode"), "{f} lstopo NUMA");
        assert_eq!(Some(t.pus.len()), lstopo_count(p, "PU "), "{f} lstopo PUs");
    }
}

#[test]
fn synthetic_counts_match_hwloc_calc() {
    for desc in [
        "pack:2 numa:2 core:8 pu:2",
        "pack:2 core:64 pu:2",
        "numa:4 core:3 pu:1",
        "pack:1 l3:2 core:4 pu:4",
    ] {
        let t = Topology::from_synthetic(desc).unwrap();
        let c = t.counts();
        let Some(pkgs) = hwloc_calc(desc, "package") else { return };
        assert_eq!(c.packages, pkgs, "{desc}");
        assert_eq!(Some(c.numa_nodes), hwloc_calc(desc, "numa"), "{desc}");
        assert_eq!(Some(c.cores), hwloc_calc(desc, "core"), "{desc}");
        assert_eq!(Some(c.pus), hwloc_calc(desc, "pu"), "{desc}");
        t.validate().unwrap();
    }
    let t = Topology::from_synthetic("pack:2 numa:2 core:8 pu:2").unwrap();
    let c = t.counts();
    assert_eq!((c.packages, c.numa_nodes, c.cores, c.pus), (2, 4, 32, 64));
}

#[test]
fn trees_of_exports() {
    let mut all = String::new();
    for f in FILES {
        let t = Topology::from_xml_file(data(f)).unwrap();
        t.validate().unwrap();
        all.push_str(&format!("== {f}\n{}\n", render_tree(&t)));
    }
    insta::assert_snapshot!(all);
}

#[test]
fn json_round_trip() {
    let t = Topology::from_xml_file(data("24em64t-2n6c2t-pci.xml")).unwrap();
    let back = Topology::from_json(&t.to_json()).unwrap();
    assert_eq!(back, t);
}

#[test]
fn details_of_known_machines() {
    let t = Topology::from_xml_file(data("32em64t-2n8c2t-pci-normalio.xml")).unwrap();
    // One NVIDIA card (cuda0 + card0 on one PCI function) and one AMD card with OpenCL.
    assert_eq!(t.gpus.len(), 2, "{:#?}", t.gpus);
    assert_eq!(t.gpus[0].names, vec!["cuda0", "card0"]);
    assert!(!t.gpus[0].cpuset.is_empty());
    // Mixed models on one machine, each with the type users ask for.
    let models: Vec<_> = t.gpus.iter().map(|g| g.model.as_deref()).collect();
    assert_eq!(models, [Some("Tesla K40m"), Some("AMD Radeon R9 200 / HD 7900 Series")]);
    let types: Vec<_> = t.gpus.iter().map(|g| g.gpu_type().map(String::from)).collect();
    assert_eq!(types, [Some("k40m".to_owned()), Some("r9".to_owned())]);
    let back = Topology::from_json(&t.to_json()).unwrap();
    assert_eq!(back.gpus, t.gpus, "the model survives an agent's registration (JSON)");
    // The server VGA of the 96-PU machine is a display adapter, not a GPU.
    let t = Topology::from_xml_file(data("96em64t-4n4d3ca2co-pci.xml")).unwrap();
    assert_eq!(t.gpus.len(), 0);
    let t = Topology::from_xml_file(data("64intel64-fakeKNL-SNC4-hybrid.xml")).unwrap();
    let kinds: Vec<_> = t.numa_nodes.iter().filter_map(|n| n.subtype.clone()).collect();
    assert!(kinds.contains(&"MCDRAM".to_owned()), "{kinds:?}");
    let t = Topology::from_xml_file(data("16em64t-4s2c2t-offlines.xml")).unwrap();
    assert_eq!(t.complete_cpuset.len(), 16);
    assert_eq!(t.pus.len(), 7);
    let t = Topology::from_xml_file(data("16amd64-8n2c-cpusets.xml")).unwrap();
    assert_eq!(t.allowed_cpuset.to_string(), "0-3,5-6,12-15");
}

#[test]
fn discover_this_machine() {
    let start = std::time::Instant::now();
    let t = Topology::discover().unwrap();
    let took = start.elapsed();
    eprintln!("Topology::discover() took {took:?}: {}", render_tree(&t));
    assert!(!t.pus.is_empty());
    assert!(t.counts().pus >= 1);
    assert!(gangway_topology::available_cpus() >= 1);
}

#[test]
fn malformed_xml_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("gangway-topo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.xml");
    std::fs::write(&bad, "<topology><object type=\"Machine\"").unwrap();
    let e = Topology::from_xml_file(&bad).unwrap_err();
    assert!(matches!(e, TopologyError::Xml { .. }));
    let msg = e.to_string();
    assert!(msg.starts_with("--topology-xml") && msg.contains("bad.xml"), "{msg}");
    let e = Topology::from_xml_file(dir.join("missing.xml")).unwrap_err().to_string();
    assert!(e.contains("missing.xml") && e.contains("No such file"), "{e}");
    let e = Topology::from_xml_file(&dir).unwrap_err().to_string();
    assert!(e.contains("not a regular file"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn malformed_synthetic_is_a_clear_error() {
    for desc in ["pack:2 core:x", "banana:3", "", "pack:0 pu:1"] {
        let e = Topology::from_synthetic(desc).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, TopologyError::Synthetic { .. }), "{desc}: {msg}");
        assert!(msg.starts_with("--synthetic") && msg.contains(desc), "{msg}");
    }
}
