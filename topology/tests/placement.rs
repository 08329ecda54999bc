//! Placement on built shapes and real-machine exports: the documented behaviours, the error
//! messages users see, and `render_map` snapshots for `--dry-run`.

#![expect(
    clippy::unwrap_used,
    reason = "helpers outside #[test] fns fail the test by panicking, like the tests themselves"
)]

use std::path::Path;
use std::sync::Arc;

use gangway_topology::{
    CpuBind, CpuSet, Distribution, Hint, MemBind, NodeSpec, PlacementError, PlacementRequest,
    PuNumbering, Shape, Topology, place, render_map,
};

fn xml(name: &str) -> Topology {
    Topology::from_xml_file(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name))
        .unwrap()
}

fn req(ntasks: u32, cpus: u32) -> PlacementRequest {
    PlacementRequest { ntasks, cpus_per_task: cpus, ..PlacementRequest::default() }
}

fn with(mut r: PlacementRequest, bind: &str, dist: &str) -> PlacementRequest {
    r.cpu_bind = bind.parse().unwrap();
    r.distribution = dist.parse().unwrap();
    r
}

fn cpus(p: &gangway_topology::Placement) -> Vec<String> {
    p.ranks.iter().map(|r| r.binding.cpus.to_string()).collect()
}

#[test]
fn block_and_cyclic_on_two_sockets() {
    let t = Shape::new(2, 4, 2).build().unwrap();
    let p = place(&with(req(4, 1), "core", "block:block"), &[&t]).unwrap();
    assert_eq!(cpus(&p), ["0-1", "2-3", "4-5", "6-7"]);
    let p = place(&with(req(4, 1), "core", "block:cyclic"), &[&t]).unwrap();
    assert_eq!(cpus(&p), ["0-1", "8-9", "2-3", "10-11"]);
    let p = place(&with(req(2, 2), "threads", "block:fcyclic"), &[&t]).unwrap();
    assert_eq!(cpus(&p), ["0,8", "1,9"]);
    let p = place(&with(req(2, 1), "socket", "block:block"), &[&t]).unwrap();
    assert_eq!(cpus(&p), ["0-7", "0-7"]);
    let p = place(&with(req(2, 1), "none", "block:cyclic"), &[&t]).unwrap();
    assert!(p.ranks.iter().all(|r| r.binding.unbound && r.binding.cpus.to_string() == "0-15"));
}

#[test]
fn nomultithread_uses_one_thread_per_core() {
    let mut s = Shape::new(1, 4, 2);
    s.numbering = PuNumbering::Interleaved;
    let t = s.build().unwrap();
    let mut r = with(req(2, 2), "core", "block:block");
    r.hint = Hint::Nomultithread;
    let p = place(&r, &[&t]).unwrap();
    assert_eq!(cpus(&p), ["0-1", "2-3"]);
    r.hint = Hint::default();
    let p = place(&r, &[&t]).unwrap();
    assert_eq!(cpus(&p), ["0-1,4-5", "2-3,6-7"]);
}

#[test]
fn block_keeps_ranks_inside_numa_nodes() {
    let mut s = Shape::new(1, 6, 1);
    s.numa_per_package = 2;
    s.cores_per_numa = 6;
    let t = s.build().unwrap();
    // 4-core ranks: one per 6-core NUMA node rather than straddling.
    let p = place(&with(req(2, 4), "core", "block:block"), &[&t]).unwrap();
    assert_eq!(cpus(&p), ["0-3", "6-9"]);
    assert_eq!(p.ranks[1].binding.numa.to_string(), "1");
    // Three do not fit that way; then they pack.
    let p = place(&with(req(3, 4), "core", "block:block"), &[&t]).unwrap();
    assert_eq!(cpus(&p), ["0-3", "4-7", "8-11"]);
}

#[test]
fn node_distributions() {
    let t = Arc::new(Shape::new(1, 4, 1).build().unwrap());
    let nodes = vec![t.clone(), t.clone(), t];
    let node_of = |r: &PlacementRequest| -> Vec<u32> {
        place(r, &nodes).unwrap().ranks.iter().map(|x| x.node).collect()
    };
    assert_eq!(node_of(&with(req(6, 1), "core", "block")), [0, 0, 1, 1, 2, 2]);
    assert_eq!(node_of(&with(req(7, 1), "core", "block")), [0, 0, 0, 1, 1, 2, 2]);
    assert_eq!(node_of(&with(req(6, 1), "core", "cyclic")), [0, 1, 2, 0, 1, 2]);
    assert_eq!(node_of(&with(req(8, 1), "core", "plane=2")), [0, 0, 1, 1, 2, 2, 0, 0]);
    let mut r = with(req(6, 1), "core", "block");
    r.tasks_per_node = Some(4);
    assert_eq!(node_of(&r), [0, 0, 0, 0, 1, 1]);
    let p = place(&r, &nodes).unwrap();
    assert_eq!(p.tasks_per_node, [4, 2, 0]);
    assert_eq!(p.ranks[5].local_rank, 1);
}

#[test]
fn allocation_restricts_cpus() {
    let t = Shape::new(2, 4, 1).build().unwrap();
    let nodes = [NodeSpec { topology: &t, available: Some("2-5".parse().unwrap()) }];
    let p = place(&with(req(4, 1), "core", "block:block"), &nodes).unwrap();
    assert_eq!(cpus(&p), ["2", "3", "4", "5"]);
    let e = place(&req(5, 1), &nodes).unwrap_err();
    assert_eq!(
        e.to_string(),
        "5 tasks x 1 cpus need 5 cores, node 0 allows 4; lower --ntasks or --cpus-per-task, or \
         add --oversubscribe"
    );
}

#[test]
fn the_message_from_the_issue() {
    let t = Shape::new(2, 8, 1).build().unwrap();
    let e = place(&req(8, 4), &[&t]).unwrap_err().to_string();
    assert!(e.starts_with("8 tasks x 4 cpus need 32 cores, node 0 allows 16"), "{e}");
}

#[test]
fn oversubscribe_relaxes_binding() {
    let t = Shape::new(1, 2, 1).build().unwrap();
    let mut r = req(5, 1);
    r.oversubscribe = true;
    let p = place(&r, &[&t]).unwrap();
    assert!(p.oversubscribed && p.binding_relaxed);
    assert!(p.ranks.iter().all(|r| r.binding.unbound
        && r.binding.oversubscribed
        && r.binding.cpus.to_string() == "0-1"));
    assert!(p.notes[0].contains("binding relaxed"), "{:?}", p.notes);
    // Within capacity, --oversubscribe changes nothing.
    r.ntasks = 2;
    let p = place(&r, &[&t]).unwrap();
    assert!(!p.oversubscribed && !p.binding_relaxed);
    assert_eq!(cpus(&p), ["0", "1"]);
}

#[test]
fn explicit_maps() {
    let t = Shape::new(1, 8, 1).build().unwrap();
    let p = place(&with(req(4, 1), "map_cpu:7,5,3,1", "block"), &[&t]).unwrap();
    assert_eq!(cpus(&p), ["7", "5", "3", "1"]);
    let p = place(&with(req(2, 1), "mask_cpu:0x3,0xc", "block"), &[&t]).unwrap();
    assert_eq!(cpus(&p), ["0-1", "2-3"]);
    let e = place(&with(req(4, 1), "map_cpu:0,1,2,3,4", "block"), &[&t]).unwrap_err();
    assert_eq!(e.to_string(), "--cpu-bind=map_cpu lists 5 CPUs for 4 tasks per node");
    let e = place(&with(req(2, 1), "map_cpu:0,9", "block"), &[&t]).unwrap_err();
    assert!(e.to_string().contains("CPU 9 is not available on node 0 (available: 0-7)"), "{e}");
    let e = place(&with(req(4, 1), "map_cpu:0,1", "block"), &[&t]).unwrap_err();
    assert!(matches!(e, PlacementError::MapShares { first: 0, second: 2, .. }), "{e}");
    let mut r = with(req(4, 1), "map_cpu:0,1", "block");
    r.oversubscribe = true;
    let p = place(&r, &[&t]).unwrap();
    assert_eq!(cpus(&p), ["0", "1", "0", "1"]);
    assert!(p.oversubscribed && !p.binding_relaxed);
    let e = place(&with(req(2, 2), "map_cpu:0,1", "block"), &[&t]).unwrap_err();
    assert!(e.to_string().contains("use mask_cpu"), "{e}");
}

#[test]
fn bad_requests_name_the_flag() {
    let t = Shape::new(1, 4, 2).build().unwrap();
    let e = place(&req(1, 5), &[&t]).unwrap_err().to_string();
    assert_eq!(e, "--cpus-per-task=5 is more than a node has: node 0 allows 4 cores");
    let e = place(&with(req(1, 9), "threads", "block"), &[&t]).unwrap_err().to_string();
    assert_eq!(e, "--cpus-per-task=9 is more than a node has: node 0 allows 8 PUs");
    assert_eq!(place(&req(0, 1), &[&t]).unwrap_err().to_string(), "--ntasks must be at least 1");
    assert!(place(&req(1, 0), &[&t]).unwrap_err().to_string().contains("--cpus-per-task"));
    assert!(place::<&Topology>(&req(1, 1), &[]).unwrap_err().to_string().contains("no nodes"));
    let mut r = req(5, 1);
    r.tasks_per_node = Some(2);
    let e = place(&r, &[&t, &t]).unwrap_err().to_string();
    assert_eq!(e, "--ntasks=5 with --ntasks-per-node=2 needs 3 nodes, 2 given");
    let mut r = req(3, 1);
    r.tasks_per_socket = Some(2);
    let e = place(&r, &[&t]).unwrap_err().to_string();
    assert!(e.starts_with("--ntasks-per-socket=2: node 0 has 1 sockets"), "{e}");
    let mut r = req(2, 1);
    r.gpus_per_task = 1;
    let e = place(&r, &[&t]).unwrap_err().to_string();
    assert!(e.starts_with("--gpus-per-task=1 needs 2 GPUs for 2 tasks on node 0, it has 0"), "{e}");
    let e = "bind-to-core".parse::<CpuBind>().unwrap_err().to_string();
    assert!(e.starts_with("--cpu-bind: unknown binding 'bind-to-core'; valid: none"), "{e}");
    assert!("round-robin".parse::<Distribution>().is_err());
}

#[test]
fn gpus_go_to_the_nearest_ranks() {
    let mut s = Shape::new(2, 4, 1);
    s.gpus_per_package = 2;
    let t = s.build().unwrap();
    let mut r = with(req(4, 1), "core", "block:cyclic");
    r.gpus_per_task = 1;
    r.mem_bind = MemBind::Local;
    let p = place(&r, &[&t]).unwrap();
    // Ranks alternate sockets; each gets a GPU of its own socket.
    let got: Vec<(String, Vec<u32>, String)> = p
        .ranks
        .iter()
        .map(|r| {
            (r.binding.cpus.to_string(), r.binding.gpus.clone(), r.binding.mem_nodes.to_string())
        })
        .collect();
    assert_eq!(
        got,
        [
            ("0".into(), vec![0], "0".into()),
            ("4".into(), vec![2], "1".into()),
            ("1".into(), vec![1], "0".into()),
            ("5".into(), vec![3], "1".into())
        ]
    );
}

#[test]
fn gpus_on_a_real_export() {
    let t = xml("32em64t-2n8c2t-pci-normalio.xml");
    let mut r = with(req(2, 4), "core", "block:cyclic");
    r.gpus_per_task = 1;
    let p = place(&r, &[&t]).unwrap();
    // Both GPUs hang off package 1; each rank still gets one of its own.
    assert_eq!(p.ranks[0].binding.gpus, [0]);
    assert_eq!(p.ranks[1].binding.gpus, [0u32; 1].map(|_| 1));
    // The rank on package 1 got GPU 0, the nearest, when only one rank asks.
    let mut r = with(req(2, 4), "core", "block:cyclic");
    r.gpus_per_task = 1;
    r.ntasks = 1;
    let p = place(&r, &[&t]).unwrap();
    assert_eq!(p.ranks[0].binding.gpus, [0]);
}

#[test]
fn disallowed_cpus_are_never_used() {
    let t = xml("16amd64-8n2c-cpusets.xml");
    let p = place(&with(req(10, 1), "core", "block:block"), &[&t]).unwrap();
    let mut all = CpuSet::new();
    for r in &p.ranks {
        assert!(r.binding.cpus.is_subset(&t.allowed_cpuset));
        all |= &r.binding.cpus;
    }
    assert_eq!(all, t.allowed_cpuset);
    assert!(place(&req(11, 1), &[&t]).is_err());
}

#[test]
fn json_of_a_placement() {
    let t = Shape::new(1, 2, 2).build().unwrap();
    let p = place(&req(2, 1), &[&t]).unwrap();
    let v: serde_json::Value = serde_json::from_str(&p.to_json()).unwrap();
    assert_eq!(v["ranks"][1]["cpus"], "2-3");
    assert_eq!(v["ranks"][1]["node"], 0);
    assert_eq!(v["cpu_bind"], "cores");
}

/// (ntasks, cpus per task, --cpu-bind, --distribution, --mem-bind)
type Case = (u32, u32, &'static str, &'static str, &'static str);

/// Snapshots of `--dry-run` maps on the real-machine exports.
#[test]
fn dry_run_maps_of_real_machines() {
    let cases: [(&str, &[Case]); 4] = [
        (
            "16em64t-4s2c2t.xml",
            &[
                (8, 1, "core", "block:cyclic", "none"),
                (4, 2, "core", "block:block", "local"),
                (16, 1, "threads", "block:block", "none"),
                (4, 1, "socket", "block:cyclic", "none"),
            ],
        ),
        (
            "16amd64-8n2c-cpusets.xml",
            &[(10, 1, "core", "block:block", "local"), (3, 2, "numa", "block:cyclic", "local")],
        ),
        (
            "24em64t-2n6c2t-pci.xml",
            &[
                (4, 3, "core", "block:block", "local"),
                (4, 3, "core", "block:cyclic", "local"),
                (2, 4, "threads", "block:fcyclic", "none"),
                (6, 1, "l3", "block:cyclic", "none"),
            ],
        ),
        (
            "64intel64-fakeKNL-SNC4-hybrid.xml",
            &[
                (4, 4, "core", "block:block", "local"),
                (8, 2, "numa", "block:cyclic", "local"),
                (16, 4, "threads", "block:block", "none"),
            ],
        ),
    ];
    for (file, requests) in cases {
        let t = xml(file);
        let mut out = String::new();
        for &(n, c, bind, dist, mem) in requests {
            let mut r = with(req(n, c), bind, dist);
            r.mem_bind = mem.parse().unwrap();
            let p = place(&r, &[&t]).unwrap();
            out.push_str(&format!(
                "$ -n {n} -c {c} --cpu-bind={bind} --distribution={dist} --mem-bind={mem}\n"
            ));
            out.push_str(&render_map(&p, &["host-a"]));
            out.push('\n');
        }
        // Oversubscribed: the note and the relaxed binding show.
        let mut r = req(t.counts().cores as u32 + 1, 1);
        r.oversubscribe = true;
        let p = place(&r, &[&t]).unwrap();
        out.push_str("$ -n cores+1 --oversubscribe\n");
        out.push_str(&render_map(&p, &["host-a"]));
        insta::assert_snapshot!(file, out);
    }
}

#[test]
fn dry_run_map_over_two_hosts() {
    let t = xml("24em64t-2n6c2t-pci.xml");
    let mut r = with(req(6, 2), "core", "cyclic:block");
    r.mem_bind = MemBind::Local;
    let p = place(&r, &[&t, &t]).unwrap();
    insta::assert_snapshot!(render_map(&p, &["n001", "n002"]));
}
