//! `PMI_process_mapping`: writing the `(vector,(start,nodes,ppn),...)` value MPICH reads to learn
//! which ranks share a node, and reading it back the way MPICH does.
//!
//! MPICH assigns ranks block by block, node by node, `ppn` ranks per node. When the blocks cover
//! fewer ranks than the job has, it starts over from the first block whose start node is 0 (from
//! the first block if none is), and it stops as soon as every rank has a node. So a short list can
//! describe a long periodic layout: round robin over two nodes is `(vector,(0,2,1))`.

/// The longest mapping a client can receive: MPICH caps values at 673 characters (see
/// [`super::wire::VALLEN_MAX`] and the spec's `get_maxes` arithmetic). Longer ones get truncated
/// and then crash it, so we omit the key instead.
pub const MAX_MAPPING_LEN: usize = 673;

/// One `(start, nodes, ppn)` block.
type Block = (u32, u32, u32);

/// Why a mapping string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// The text does not follow `(vector,(s,n,p),...)`.
    #[error("malformed PMI_process_mapping at byte {at}: expected {expected}")]
    Syntax {
        /// Byte offset of the problem.
        at: usize,
        /// What should have been there.
        expected: &'static str,
    },
    /// A number does not fit in 32 bits.
    #[error("PMI_process_mapping number at byte {at} is too large")]
    NumberTooLarge {
        /// Byte offset of the number.
        at: usize,
    },
    /// The blocks that would be repeated cover no rank, so the ranks could never all be placed
    /// (MPICH would loop forever).
    #[error("PMI_process_mapping places no ranks in its repeated part, so {size} ranks never fit")]
    NoProgress {
        /// The job size asked for.
        size: usize,
    },
}

/// The shortest mapping that MPICH expands to exactly `node_of_rank` (index = rank, value = node
/// id), or `None` when there is nothing to describe or the text would not fit a PMI value (the
/// server then omits the key and MPICH falls back to exchanging hostnames).
///
/// "Shortest" means fewest blocks; on a tie the non-repeating form wins, which is how Hydra
/// writes it (`(vector,(0,1,4))` rather than `(vector,(0,1,1))` for one node). Two candidates are
/// tried: the whole layout written out, and its shortest repeating prefix (found in linear time),
/// which is what turns round robin into one block. Blocks are formed greedily over runs of equal
/// node ids, which is optimal for a fixed prefix unless splitting a run would let two blocks
/// merge; those rare layouts get a correct but slightly longer value.
pub fn process_mapping(node_of_rank: &[u32]) -> Option<String> {
    let first = *node_of_rank.first()?;
    let mut best = blocks_for(node_of_rank);
    // Repetition restarts at a block starting at node 0; only then is a prefix usable.
    if first == 0 {
        let period = smallest_period(node_of_rank);
        if period < node_of_rank.len() {
            let prefix = blocks_for(node_of_rank.get(..period)?);
            if prefix.len() < best.len() {
                best = prefix;
            }
        }
    }
    // Each block takes at least 8 characters; don't format a hopeless list.
    if best.len() > MAX_MAPPING_LEN / 8 {
        return None;
    }
    let mut s = String::from("(vector");
    for (start, nodes, ppn) in best {
        s.push_str(&format!(",({start},{nodes},{ppn})"));
    }
    s.push(')');
    (s.len() <= MAX_MAPPING_LEN).then_some(s)
}

/// Runs of equal node ids, merged while the node ids climb by one with equal run lengths.
fn blocks_for(layout: &[u32]) -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::new();
    let mut i = 0;
    while let Some(&node) = layout.get(i) {
        let run = layout.get(i..).unwrap_or_default().iter().take_while(|&&n| n == node).count();
        i += run;
        // Runs longer than u32 cannot occur in a job whose ranks are u32; saturate anyway.
        let run = u32::try_from(run).unwrap_or(u32::MAX);
        match blocks.last_mut() {
            Some((start, nodes, ppn)) if *ppn == run && start.checked_add(*nodes) == Some(node) => {
                *nodes += 1;
            }
            _ => blocks.push((node, 1, run)),
        }
    }
    blocks
}

/// The smallest p with `x[i] == x[i - p]` for all i ≥ p, via the prefix function.
fn smallest_period(x: &[u32]) -> usize {
    let mut border = vec![0usize; x.len()];
    for i in 1..x.len() {
        let mut k = border.get(i - 1).copied().unwrap_or(0);
        while k > 0 && x.get(k) != x.get(i) {
            k = border.get(k - 1).copied().unwrap_or(0);
        }
        if x.get(k) == x.get(i) {
            k += 1;
        }
        if let Some(b) = border.get_mut(i) {
            *b = k;
        }
    }
    x.len() - border.last().copied().unwrap_or(0)
}

/// Node id of each of `size` ranks, as MPICH reads `mapping` (see the module doc for the rule).
pub fn expand_mapping(s: &str, size: usize) -> Result<Vec<u32>, MappingError> {
    let blocks = parse(s)?;
    let mut out = Vec::with_capacity(size);
    let mut from = 0;
    while out.len() < size {
        let before = out.len();
        for &(start, nodes, ppn) in blocks.get(from..).unwrap_or_default() {
            for node in 0..nodes {
                for _ in 0..ppn {
                    if out.len() == size {
                        return Ok(out);
                    }
                    out.push(start.saturating_add(node));
                }
            }
        }
        if out.len() == before {
            return Err(MappingError::NoProgress { size });
        }
        from = blocks.iter().position(|b| b.0 == 0).unwrap_or(0);
    }
    Ok(out)
}

/// Parses `(vector,(s,n,p),...)`, whitespace allowed between tokens.
fn parse(s: &str) -> Result<Vec<Block>, MappingError> {
    let mut p = Parser { bytes: s.as_bytes(), at: 0 };
    p.expect(b'(', "`(`")?;
    p.skip_space();
    if !p.bytes.get(p.at..).unwrap_or_default().starts_with(b"vector") {
        return Err(MappingError::Syntax { at: p.at, expected: "`vector`" });
    }
    p.at += "vector".len();
    let mut blocks = Vec::new();
    loop {
        p.skip_space();
        match p.peek() {
            Some(b')') => {
                p.at += 1;
                break;
            }
            Some(b',') => p.at += 1,
            _ => {
                return Err(MappingError::Syntax { at: p.at, expected: "`,` or `)`" });
            }
        }
        p.expect(b'(', "`(` opening a block")?;
        let start = p.number()?;
        p.expect(b',', "`,`")?;
        let nodes = p.number()?;
        p.expect(b',', "`,`")?;
        let ppn = p.number()?;
        p.expect(b')', "`)` closing a block")?;
        blocks.push((start, nodes, ppn));
    }
    p.skip_space();
    if p.at != p.bytes.len() {
        return Err(MappingError::Syntax { at: p.at, expected: "end of value" });
    }
    Ok(blocks)
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn expect(&mut self, c: u8, expected: &'static str) -> Result<(), MappingError> {
        self.skip_space();
        if self.peek() == Some(c) {
            self.at += 1;
            Ok(())
        } else {
            Err(MappingError::Syntax { at: self.at, expected })
        }
    }

    fn number(&mut self) -> Result<u32, MappingError> {
        self.skip_space();
        let begin = self.at;
        let mut n: u32 = 0;
        while let Some(d) = self.peek().filter(u8::is_ascii_digit) {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(u32::from(d - b'0')))
                .ok_or(MappingError::NumberTooLarge { at: begin })?;
            self.at += 1;
        }
        if self.at == begin {
            return Err(MappingError::Syntax { at: begin, expected: "a decimal number" });
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn map(x: &[u32]) -> String {
        process_mapping(x).expect("fits")
    }

    #[test]
    fn spec_examples() {
        assert_eq!(map(&[0, 0, 1, 1]), "(vector,(0,2,2))");
        assert_eq!(map(&[0, 1, 0, 1]), "(vector,(0,2,1))");
        assert_eq!(map(&[0, 0, 0, 1]), "(vector,(0,1,3),(1,1,1))");
        assert_eq!(map(&[0, 0]), "(vector,(0,1,2))");
        assert_eq!(map(&[0; 1000]), "(vector,(0,1,1000))");
        assert_eq!(map(&[0]), "(vector,(0,1,1))");
        assert_eq!(map(&[0, 1]), "(vector,(0,2,1))");
    }

    #[test]
    fn arbitrary_layout_from_the_spec() {
        let m = map(&[0, 1, 1, 0]);
        // The spec writes it out in full; repeating `0,1,1` from the top is one block shorter.
        assert_eq!(m, "(vector,(0,1,1),(1,1,2))");
        assert_eq!(expand_mapping(&m, 4).unwrap(), [0, 1, 1, 0]);
    }

    #[test]
    fn round_robin_with_a_partial_last_round() {
        let m = map(&[0, 1, 2, 0, 1]);
        assert_eq!(m, "(vector,(0,3,1))");
        assert_eq!(expand_mapping(&m, 5).unwrap(), [0, 1, 2, 0, 1]);
    }

    #[test]
    fn oversubscribed_blocks_repeat() {
        // 2 nodes x 2 slots, 8 ranks: Hydra's wrap-around.
        let x = [0, 0, 1, 1, 0, 0, 1, 1];
        let m = map(&x);
        assert_eq!(m, "(vector,(0,2,2))");
        assert_eq!(expand_mapping(&m, 8).unwrap(), x);
    }

    #[test]
    fn rank_zero_off_node_zero_is_written_out_without_repetition() {
        let x = [1, 0, 1, 0];
        let m = map(&x);
        assert_eq!(m, "(vector,(1,1,1),(0,2,1),(0,1,1))");
        assert_eq!(expand_mapping(&m, 4).unwrap(), x);
    }

    #[test]
    fn empty_or_too_long_gives_none() {
        assert_eq!(process_mapping(&[]), None);
        // Irregular: every rank its own run with a different length pattern.
        let x: Vec<u32> = (0..400u32).map(|r| (r * 7919) % 97).collect();
        assert_eq!(process_mapping(&x), None);
    }

    #[test]
    fn result_never_exceeds_the_value_limit() {
        for n in 1..200u32 {
            let x: Vec<u32> = (0..n).map(|r| (r * r) % 13).collect();
            if let Some(m) = process_mapping(&x) {
                assert!(m.len() <= MAX_MAPPING_LEN);
                assert_eq!(expand_mapping(&m, x.len()).unwrap(), x);
            }
        }
    }

    #[test]
    fn hundred_thousand_ranks_block_and_cyclic_are_fast() {
        let n = 100_000u32;
        let t = std::time::Instant::now();
        let block: Vec<u32> = (0..n).map(|r| r / 64).collect();
        let m = map(&block);
        assert_eq!(m, format!("(vector,(0,{},64),({},1,{}))", n / 64, n / 64, n % 64));
        let even: Vec<u32> = (0..n).map(|r| r / 100).collect();
        assert_eq!(map(&even), "(vector,(0,1000,100))");
        let cyclic: Vec<u32> = (0..n).map(|r| r % 1000).collect();
        assert_eq!(map(&cyclic), "(vector,(0,1000,1))");
        let single = vec![0u32; n as usize];
        assert_eq!(map(&single), "(vector,(0,1,100000))");
        assert!(t.elapsed().as_secs() < 5, "took {:?}", t.elapsed());
    }

    #[test]
    fn expand_follows_mpich() {
        assert_eq!(expand_mapping("(vector,(0,2,2))", 4).unwrap(), [0, 0, 1, 1]);
        assert_eq!(expand_mapping("(vector,(0,2,1))", 5).unwrap(), [0, 1, 0, 1, 0]);
        assert_eq!(expand_mapping("(vector,(0,2,2))", 3).unwrap(), [0, 0, 1]);
        assert_eq!(
            expand_mapping(" ( vector , (0, 1 ,1) ,(1,1,2) )", 6).unwrap(),
            [0, 1, 1, 0, 1, 1]
        );
        // Repetition restarts at the first block starting at node 0, not at the first block.
        assert_eq!(expand_mapping("(vector,(2,1,1),(0,2,1))", 6).unwrap(), [2, 0, 1, 0, 1, 0]);
        // Without a node-0 block it restarts from the top.
        assert_eq!(expand_mapping("(vector,(1,2,1))", 3).unwrap(), [1, 2, 1]);
        assert_eq!(expand_mapping("(vector,(0,1,1))", 0).unwrap(), Vec::<u32>::new());
    }

    #[test]
    fn expand_rejects_malformed_mappings() {
        for bad in [
            "",
            "(vector,(0,2,1",
            "(vector,(0,2))",
            "(vektor,(0,1,1))",
            "(vector,(0,1,x))",
            "(vector,(0,1,1)) junk",
            "(vector (0,1,1))",
        ] {
            assert!(matches!(expand_mapping(bad, 2), Err(MappingError::Syntax { .. })), "{bad:?}");
        }
        assert_eq!(
            expand_mapping("(vector,(0,1,99999999999))", 1),
            Err(MappingError::NumberTooLarge { at: 13 })
        );
        assert_eq!(
            expand_mapping("(vector,(0,1,0))", 2),
            Err(MappingError::NoProgress { size: 2 })
        );
        assert_eq!(expand_mapping("(vector)", 1), Err(MappingError::NoProgress { size: 1 }));
        // Only the repeated part is empty: the first pass places one rank, then nothing.
        assert_eq!(
            expand_mapping("(vector,(1,1,1),(0,1,0))", 3),
            Err(MappingError::NoProgress { size: 3 })
        );
    }

    fn layout() -> impl Strategy<Value = Vec<u32>> {
        prop_oneof![
            // Arbitrary small layouts.
            proptest::collection::vec(0u32..5, 1..60),
            // Block, cyclic and block-cyclic placements with a random rank count.
            (1u32..8, 1u32..6, 1u32..80, any::<bool>()).prop_map(|(nodes, ppn, n, cyclic)| {
                (0..n)
                    .map(|r| if cyclic { (r / ppn) % nodes } else { (r / ppn).min(nodes - 1) })
                    .collect()
            }),
        ]
    }

    proptest! {
        #[test]
        fn expand_inverts_process_mapping(x in layout()) {
            if let Some(m) = process_mapping(&x) {
                prop_assert!(m.len() <= MAX_MAPPING_LEN);
                prop_assert_eq!(expand_mapping(&m, x.len()).unwrap(), x);
            }
        }

        #[test]
        fn expand_never_panics(s in "\\PC{0,40}", size in 0usize..50) {
            let _ = expand_mapping(&s, size);
        }

        #[test]
        fn expand_never_panics_on_near_valid_text(
            s in "\\(vector(,\\( ?[0-9]{1,3},[0-9]{1,2},[0-9]{1,2}\\)){0,4}\\)",
            size in 0usize..50,
        ) {
            let _ = expand_mapping(&s, size);
        }
    }
}
