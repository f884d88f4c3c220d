//! Loads a trivial spin-lock program into the running kernel and prints the result as JSON:
//! a smoke test for a (statically linked) build, e.g. `scripts/build-agent.sh --probe`.

use lockstep_bpf::Loader;
use lockstep_core::asm::{assemble, Symbols};
use lockstep_core::case::{Case, Field, FieldKind, MapSpec, MapType, ProgType, ValueLayout};

fn main() {
    let loader = match Loader::new() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bpf_probe: {e}");
            std::process::exit(1);
        }
    };
    let text =
        "r1 = .data + 4 ll\ncall bpf_spin_lock\nr1 = .data + 4 ll\ncall bpf_spin_unlock\nr0 = 0\nexit\n";
    let symbols = Symbols { maps: vec![".data".into()], kfuncs: vec![] };
    let program = assemble(text, &symbols).expect("assembles");
    let value = ValueLayout {
        size: 8,
        fields: vec![
            Field { name: "cnt".into(), kind: FieldKind::Int, offset: 0, size: 4, target: None },
            Field { name: "lock".into(), kind: FieldKind::SpinLock, offset: 4, size: 4, target: None },
        ],
    };
    let map = MapSpec {
        name: ".data".into(),
        map_type: MapType::Array,
        key_size: 4,
        max_entries: 1,
        value,
        btf: true,
        global_section: true,
        flags: 0,
        inner: None,
    };
    let case = Case { maps: vec![map], ..Case::new("bpf_probe", ProgType::SchedCls, program, text) };
    let result = loader.run_case(&case, false);
    println!("release {} modules {:?}", loader.kernel_release(), loader.module_names());
    println!("{}", serde_json::to_string(&result).expect("serialises"));
}
