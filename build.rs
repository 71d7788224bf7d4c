//! Generates Rust code for every `.proto` under `proto/` and the file descriptor set that the
//! services hand to gRPC server reflection. protoc comes from `protoc-bin-vendored`, so a fresh
//! machine needs nothing installed by hand.

use std::{env, path::PathBuf};

const PROTOS: &[&str] = &[
    "proto/identity/v1/auth.proto",
    "proto/identity/v1/token.proto",
    "proto/identity/v1/directory.proto",
    "proto/clinic/v1/organization.proto",
    "proto/clinic/v1/member.proto",
    "proto/clinic/v1/appointment.proto",
    "proto/clinic/v1/schedule.proto",
    "proto/clinic/v1/audit.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    let well_known = protoc_bin_vendored::include_path()?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);

    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("clinic_descriptor.bin"))
        .compile_protos(
            &PROTOS.iter().map(PathBuf::from).collect::<Vec<_>>(),
            &[PathBuf::from("proto"), well_known],
        )?;

    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
