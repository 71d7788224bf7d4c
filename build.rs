//! Generates Rust code for every `.proto` under `proto/` and the file descriptor set that the
//! services hand to gRPC server reflection. protoc comes from `protoc-bin-vendored`, so a fresh
//! machine needs nothing installed by hand.

use std::{env, path::PathBuf};

/// Every `.proto` under `proto/`, sorted (so a new file needs no edit here, and the build
/// script is the same binary whatever the checkout's files).
fn protos(dir: &std::path::Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            protos(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    let well_known = protoc_bin_vendored::include_path()?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    let mut files = Vec::new();
    protos(std::path::Path::new("proto"), &mut files)?;
    files.sort();
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("clinic_descriptor.bin"))
        .compile_protos(&files, &[PathBuf::from("proto"), well_known])?;

    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
