//! Bounded mutation fuzzing of the case-file parser and the assembler: thousands of byte- and
//! line-level mutations of the bundled corpus files, each decoded, parsed, assembled and
//! disassembled under `catch_unwind`. Errors are fine; a panic is a bug. Deterministic (a seeded
//! xorshift generator); `LOCKSTEP_FUZZ_ITERS` and `LOCKSTEP_FUZZ_SEED` widen a run by hand.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use lockstep_core::asm::{assemble, disassemble, Symbols};
use lockstep_core::corpus::{known_kfuncs, load_bytes};

#[path = "support/rng.rs"]
mod rng;
use rng::Rng;

/// Bytes and tokens that matter to TOML or the assembler.
const TOKENS: &[&str] = &[
    "\"",
    "'",
    "'''",
    "\"\"\"",
    "[",
    "]",
    "[[case]]",
    "[[case.map]]",
    "[case.expect.\"7.3\"]",
    "\n",
    "=",
    "{",
    "}",
    ",",
    "#",
    "\\",
    "\\u{",
    "\u{0}",
    "\u{feff}",
    "é",
    "\r\n",
    "r11",
    "r15",
    "w10",
    "r10",
    "-",
    "+",
    "*",
    "(u64 *)",
    "(u8 *)",
    "(r10 -",
    "0x",
    "0xffffffffffffffff",
    "18446744073709551616",
    "-9223372036854775809",
    "4294967296",
    "2147483648",
    "-2147483649",
    "65536",
    "-32769",
    " ll",
    "goto",
    "goto +",
    "goto -",
    "call",
    "call ",
    "if r1 ",
    " == ",
    "exit",
    "lock:",
    "l0_%=:",
    "%=",
    ":",
    "<<=",
    ">>=",
    "s>>=",
    " s/= ",
    "may_goto",
    "gotol",
    "lock ",
    "atomic",
    "callx",
    "be16",
    "le64",
    "bswap",
    "(s32)",
    "(s8)",
];

/// One mutation of `src` (any corpus file may be spliced in from `others`).
fn mutate(rng: &mut Rng, src: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut s = src.to_vec();
    let lines = |s: &[u8]| -> Vec<Vec<u8>> { s.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect() };
    for _ in 0..1 + rng.below(3) {
        let at = rng.below(s.len() + 1);
        match rng.below(10) {
            0 if !s.is_empty() => {
                let i = rng.below(s.len());
                s[i] ^= 1 << rng.below(8);
            }
            1 if !s.is_empty() => {
                let i = rng.below(s.len());
                s[i] = rng.next() as u8;
            }
            2 => s.splice(at..at, rng.pick(TOKENS).bytes()).for_each(drop),
            3 if at < s.len() => {
                let end = (at + 1 + rng.below(16)).min(s.len());
                s.drain(at..end);
            }
            4 => s.truncate(at),
            5 | 6 => {
                let mut l = lines(&s);
                let (i, j) = (rng.below(l.len()), rng.below(l.len()));
                match rng.below(3) {
                    0 => drop(l.remove(i)),
                    1 => l.swap(i, j),
                    _ => {
                        let d = l[i].clone();
                        l.insert(j, d);
                    }
                }
                s = l.join(&b'\n');
            }
            7 => {
                // A number in the text becomes an extreme one.
                let l = lines(&s);
                let i = rng.below(l.len());
                let line = String::from_utf8_lossy(&l[i]).into_owned();
                let start = line.find(|c: char| c.is_ascii_digit());
                if let Some(st) = start {
                    let end = line[st..].find(|c: char| !c.is_ascii_digit()).map_or(line.len(), |e| st + e);
                    let big = *rng.pick(&["0", "11", "4294967295", "99999999999999999999999", "-1", "65535"]);
                    let mut l = l;
                    l[i] = format!("{}{big}{}", &line[..st], &line[end..]).into_bytes();
                    s = l.join(&b'\n');
                }
            }
            8 => {
                let o = rng.pick(others);
                let l = lines(o);
                let from = rng.below(l.len());
                let piece = l[from..(from + 1 + rng.below(8)).min(l.len())].join(&b'\n');
                s.splice(at..at, piece).for_each(drop);
            }
            _ => s.splice(at..at, [rng.next() as u8]).for_each(drop),
        }
    }
    s
}

fn corpus_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests");
    let mut out = Vec::new();
    let mut stack = vec![root.join("corpus"), root.join("fuzz")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "toml") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The file cut into single-case pieces (each `[[case]]` table with its sub-tables), so that a
/// mutation is parsed in microseconds rather than with its whole file.
fn case_pieces(src: &[u8]) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(src);
    let mut pieces: Vec<String> = Vec::new();
    for line in text.split_inclusive('\n') {
        if line.starts_with("[[case]]") || pieces.is_empty() {
            pieces.push(String::new());
        }
        pieces.last_mut().unwrap().push_str(line);
    }
    pieces.into_iter().map(String::into_bytes).collect()
}

/// Parses, assembles and disassembles `input`; `Err` carries the panic message.
fn exercise(input: &[u8], known: &[String], symbols: &Symbols) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| {
        if let Ok(cases) = load_bytes("fuzz.toml", input, known) {
            for c in &cases {
                let _ = disassemble(&c.program);
            }
        }
        // The same bytes as a bare program text (the assembler alone).
        if let Ok(text) = std::str::from_utf8(input) {
            if let Ok(p) = assemble(text, symbols) {
                let _ = disassemble(&p);
            }
        }
    }))
    .map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

#[test]
fn mutated_corpus_files_never_panic_the_parser_or_assembler() {
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let iters = env("LOCKSTEP_FUZZ_ITERS", 10_000) as usize;
    let mut rng = Rng(env("LOCKSTEP_FUZZ_SEED", 0x5eed_1234_abcd_0001) | 1);
    let module = lockstep_core::module_src::bundled();
    let known = known_kfuncs(&module);
    let files: Vec<Vec<u8>> = corpus_files().iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(files.len() > 20, "corpus not found");
    let pieces: Vec<Vec<u8>> = files.iter().flat_map(|f| case_pieces(f)).collect();
    // Program texts with the corpus's map names, for the assembler alone.
    let mut maps = vec!["m".to_string(), ".data".to_string(), ".bss".to_string()];
    for f in &files {
        for c in load_bytes("c", f, &known).unwrap() {
            maps.extend(c.maps.iter().map(|m| m.name.clone()));
        }
    }
    maps.sort();
    maps.dedup();
    let symbols = Symbols { maps, kfuncs: known.clone() };

    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut panics = Vec::new();
    for i in 0..iters {
        // Mostly single cases; now and then a whole file.
        let base = if i % 50 == 0 { rng.pick(&files) } else { rng.pick(&pieces) };
        let input = mutate(&mut rng, base, &files);
        if let Err(msg) = exercise(&input, &known, &symbols) {
            panics.push((i, msg, input));
        }
    }
    std::panic::set_hook(quiet);
    if let Some((i, msg, input)) = panics.first() {
        let keep = std::env::temp_dir().join(format!("lockstep-fuzz-panic-{i}.toml"));
        let _ = std::fs::write(&keep, input);
        panic!(
            "{} of {iters} mutated inputs panicked; first (iteration {i}, kept as {}): {msg}",
            panics.len(),
            keep.display()
        );
    }
    eprintln!(
        "{iters} mutated inputs, {} single-case pieces of {} files: 0 panics",
        pieces.len(),
        files.len()
    );
}
