//! Property tests of placement over many machine shapes, built directly ([`Shape`]) and through
//! hwloc synthetic descriptions: no shared PUs unless oversubscribed, exact CPU counts, NUMA
//! locality for block, socket alternation for cyclic, determinism.

#![expect(
    clippy::unwrap_used,
    reason = "helpers outside #[test] fns fail the test by panicking, like the tests themselves"
)]

use std::collections::BTreeMap;

use gangway_topology::{
    CpuBind, CpuSet, CpuUnit, Distribution, Hint, NodeDistribution, Placement, PlacementRequest,
    PuNumbering, Shape, SocketDistribution, Topology, place,
};
use proptest::prelude::*;

fn shape() -> impl Strategy<Value = Shape> {
    (1u32..=4, 1u32..=3, 1u32..=8, 1u32..=4, 0u32..=1, any::<bool>(), any::<u64>()).prop_map(
        |(p, n, c, t, l3, inter, mask)| {
            let mut s = Shape::new(p, c, t);
            s.numa_per_package = n;
            s.cores_per_numa = c;
            s.l3_per_numa = l3;
            s.numbering = if inter { PuNumbering::Interleaved } else { PuNumbering::Sequential };
            // A third of the shapes restrict the allowed CPUs (as a cgroup would).
            if mask % 3 == 0 {
                let allowed: CpuSet = (0..64).filter(|b| mask >> b & 1 == 1).collect();
                s.allowed = Some(allowed);
            }
            s
        },
    )
}

fn request() -> impl Strategy<Value = PlacementRequest> {
    (1u32..=40, 1u32..=4, 0usize..6, 0usize..3, 0usize..2, any::<bool>()).prop_map(
        |(n, c, bind, dist, hint, over)| PlacementRequest {
            ntasks: n,
            cpus_per_task: c,
            cpu_bind: [
                CpuBind::Threads,
                CpuBind::Cores,
                CpuBind::L3,
                CpuBind::Numa,
                CpuBind::Sockets,
                CpuBind::None,
            ][bind]
                .clone(),
            distribution: Distribution {
                node: NodeDistribution::Block,
                socket: [
                    SocketDistribution::Block,
                    SocketDistribution::Cyclic,
                    SocketDistribution::Fcyclic,
                ][dist],
            },
            hint: [Hint::Default, Hint::Nomultithread][hint],
            oversubscribe: over,
            ..PlacementRequest::default()
        },
    )
}

/// Units a node offers: allowed cores, or allowed PUs when CPUs are threads.
fn units(t: &Topology, r: &PlacementRequest) -> usize {
    let thread = r.cpu_bind == CpuBind::Threads;
    t.cores
        .iter()
        .map(|c| {
            let n = c.cpuset.intersection(&t.allowed_cpuset).len();
            match (thread, r.hint, n) {
                (_, _, 0) => 0,
                (true, Hint::Default, n) => n,
                _ => 1,
            }
        })
        .sum()
}

/// Leaf domains (package, NUMA node) with their unit counts.
fn domains(t: &Topology, r: &PlacementRequest) -> BTreeMap<(Option<u32>, Option<u32>), usize> {
    let thread = r.cpu_bind == CpuBind::Threads && r.hint == Hint::Default;
    let mut m = BTreeMap::new();
    for c in &t.cores {
        let n = c.cpuset.intersection(&t.allowed_cpuset).len();
        if n > 0 {
            *m.entry((c.package, c.numa)).or_insert(0) += if thread { n } else { 1 };
        }
    }
    m
}

fn core_of_cpu(t: &Topology, cpu: u32) -> &gangway_topology::Core {
    let (_, pu) = t.pu_by_os_index(cpu).unwrap();
    &t.cores[pu.core as usize]
}

fn check(
    t: &Topology,
    r: &PlacementRequest,
    res: &Result<Placement, gangway_topology::PlacementError>,
) -> Result<(), TestCaseError> {
    let u = units(t, r);
    let need = r.ntasks as usize * r.cpus_per_task as usize;
    if u == 0 {
        prop_assert!(res.is_err());
        return Ok(());
    }
    if !r.oversubscribe {
        prop_assert_eq!(res.is_ok(), need <= u, "need {} units, node has {}: {:?}", need, u, res);
    } else {
        prop_assert!(res.is_ok(), "{:?}", res);
    }
    let Ok(p) = res else { return Ok(()) };
    prop_assert_eq!(p.ranks.len(), r.ntasks as usize);
    prop_assert_eq!(p.oversubscribed, need > u);
    for (i, rank) in p.ranks.iter().enumerate() {
        prop_assert_eq!(rank.rank as usize, i);
        prop_assert!(!rank.binding.cpus.is_empty());
        prop_assert!(
            rank.binding.cpus.is_subset(&t.allowed_cpuset),
            "rank {} uses disallowed CPUs",
            i
        );
    }
    if p.oversubscribed {
        prop_assert!(p.binding_relaxed && p.ranks.iter().all(|x| x.binding.unbound));
        return Ok(());
    }
    let c = r.cpus_per_task as usize;
    // Exactly cpus-per-task units each.
    for rank in &p.ranks {
        match (p.cpu_unit, r.cpu_bind.clone()) {
            (CpuUnit::Thread, CpuBind::Threads) => prop_assert_eq!(rank.binding.cpus.len(), c),
            (CpuUnit::Core, CpuBind::None) => {}
            (CpuUnit::Core, _) => prop_assert_eq!(rank.binding.cores.len(), c),
            _ => {}
        }
        if r.hint == Hint::Nomultithread && matches!(r.cpu_bind, CpuBind::Cores | CpuBind::Threads)
        {
            prop_assert_eq!(rank.binding.cpus.len(), c);
        }
    }
    // No two ranks share a PU (threads/cores binding) or a core (core units).
    let mut seen_cpus = CpuSet::new();
    let mut seen_cores = CpuSet::new();
    for rank in &p.ranks {
        if matches!(r.cpu_bind, CpuBind::Threads | CpuBind::Cores) {
            prop_assert!(
                !rank.binding.cpus.intersects(&seen_cpus),
                "PU shared: {}",
                rank.binding.cpus
            );
            seen_cpus |= &rank.binding.cpus;
        }
        if p.cpu_unit == CpuUnit::Core && r.cpu_bind != CpuBind::None {
            prop_assert!(
                !rank.binding.cores.intersects(&seen_cores),
                "core shared: {}",
                rank.binding.cores
            );
            seen_cores |= &rank.binding.cores;
        }
    }
    let doms = domains(t, r);
    // Block keeps a rank inside one NUMA node whenever all ranks can be packed that way.
    if r.distribution.socket == SocketDistribution::Block
        && matches!(r.cpu_bind, CpuBind::Threads | CpuBind::Cores)
    {
        let fits: usize = doms.values().map(|&n| n / c).sum();
        if fits >= r.ntasks as usize {
            for rank in &p.ranks {
                let keys: std::collections::BTreeSet<_> = rank
                    .binding
                    .cpus
                    .iter()
                    .map(|cpu| {
                        let k = core_of_cpu(t, cpu);
                        (k.package, k.numa)
                    })
                    .collect();
                prop_assert_eq!(
                    keys.len(),
                    1,
                    "rank {} spans NUMA nodes: {}",
                    rank.rank,
                    rank.binding.cpus
                );
            }
        }
    }
    // Cyclic alternates sockets when every socket has room for its share.
    if r.distribution.socket == SocketDistribution::Cyclic && r.cpu_bind != CpuBind::None {
        let mut per_socket: BTreeMap<Option<u32>, usize> = BTreeMap::new();
        for (&(pkg, _), &n) in &doms {
            *per_socket.entry(pkg).or_insert(0) += n / c;
        }
        let sockets: Vec<Option<u32>> = per_socket.keys().copied().collect();
        let s = sockets.len();
        let share = (r.ntasks as usize).div_ceil(s);
        if s >= 2 && per_socket.values().all(|&room| room >= share) {
            for rank in &p.ranks {
                let first = rank.binding.cores.first().unwrap();
                let pkg = t.cores[first as usize].package;
                prop_assert_eq!(
                    pkg,
                    sockets[rank.rank as usize % s],
                    "rank {} on {:?}",
                    rank.rank,
                    pkg
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn placement_properties_on_built_shapes(s in shape(), r in request()) {
        let t = s.build().unwrap();
        let res = place(&r, &[&t]);
        check(&t, &r, &res)?;
        // Deterministic.
        prop_assert_eq!(place(&r, &[&t]), res);
    }

    #[test]
    fn multi_node_counts(s in shape(), r in request(), nodes in 1usize..6, tpn in 0u32..5, dist in 0u32..4) {
        let t = s.build().unwrap();
        let list = vec![&t; nodes];
        let mut r = r;
        r.tasks_per_node = (tpn > 0).then_some(tpn);
        r.distribution.node = match dist { 0 => NodeDistribution::Block, 1 => NodeDistribution::Cyclic, n => NodeDistribution::Plane(n) };
        if let Ok(p) = place(&r, &list) {
            prop_assert_eq!(p.tasks_per_node.iter().sum::<u32>(), r.ntasks);
            prop_assert_eq!(p.tasks_per_node.len(), nodes);
            for (node, &k) in p.tasks_per_node.iter().enumerate() {
                prop_assert_eq!(p.ranks_on_node(node as u32).count(), k as usize);
                if let Some(tpn) = r.tasks_per_node { prop_assert!(k <= tpn); }
                let mut local: Vec<u32> = p.ranks_on_node(node as u32).map(|x| x.local_rank).collect();
                local.sort_unstable();
                prop_assert_eq!(local, (0..k).collect::<Vec<_>>());
            }
            if !r.oversubscribe {
                let per = units(&t, &r) / r.cpus_per_task as usize;
                prop_assert!(p.tasks_per_node.iter().all(|&k| k as usize <= per));
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// The same machines through hwloc's synthetic descriptions: the same properties, and the
    /// same answer as the directly built model of that shape.
    #[test]
    fn placement_properties_on_hwloc_synthetic(p in 1u32..=3, n in 1u32..=2, c in 1u32..=6, th in 1u32..=2, r in request()) {
        let desc = format!("pack:{p} numa:{n} core:{c} pu:{th}");
        let t = Topology::from_synthetic(&desc).unwrap();
        let res = place(&r, &[&t]);
        check(&t, &r, &res)?;
        let mut s = Shape::new(p, c, th);
        s.numa_per_package = n;
        s.l3_per_numa = 0;
        let built = s.build().unwrap();
        if r.cpu_bind != CpuBind::L3 {
            let a = res.map(|x| x.ranks.iter().map(|r| r.binding.cpus.clone()).collect::<Vec<_>>());
            let b = place(&r, &[&built]).map(|x| x.ranks.iter().map(|r| r.binding.cpus.clone()).collect::<Vec<_>>());
            prop_assert_eq!(a, b, "{}", desc);
        }
    }
}
