//! Fetches Debian kernels into the cache: `cargo run --example fetch -- debian:7.3 [--headers]`.

use lockstep_vm::debian::{FetchParts, KernelCache};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let headers = args.iter().any(|a| a == "--headers");
    let cache = KernelCache::open_default().unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let cache = cache.refresh(args.iter().any(|a| a == "--refresh"));
    for name in args.iter().filter(|a| !a.starts_with("--")) {
        let t = std::time::Instant::now();
        match cache.fetch(name, FetchParts { headers }, &|p| eprintln!("{p:?}")) {
            Ok(k) => println!(
                "{} {} {} ({:.1}s)",
                k.name,
                k.package_version,
                k.vmlinuz.display(),
                t.elapsed().as_secs_f64()
            ),
            Err(e) => {
                eprintln!("{name}: {e}");
                std::process::exit(1);
            }
        }
    }
    for k in cache.list() {
        println!("cached: {} {} abi {} headers={}", k.name, k.package_version, k.abi, k.headers.is_some());
    }
}
