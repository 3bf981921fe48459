//! Generates the Thanos StoreAPI and Info API code (server and client) from
//! `proto/thanos/`, the cluster's peer protocol from `proto/odin/`, and the kubelet's
//! pod-resources API and the CRI's container listing from `proto/kubelet/`, with
//! tonic-prost-build.
//!
//! protoc comes from `protoc-bin-vendored` unless `PROTOC` names one already, so a
//! fresh machine builds with nothing installed from apt.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from("proto/thanos");
    let protos = [
        root.join("store/labelpb/types.proto"),
        root.join("store/storepb/types.proto"),
        root.join("store/storepb/rpc.proto"),
        root.join("info/infopb/rpc.proto"),
    ];
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc()?);
    // Chunk bytes go out as the storage's `bytes::Bytes`, without a copy.
    config.bytes([".thanos.Chunk.data"]);
    let well_known = protoc_bin_vendored::include_path()?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_with_config(config, &protos, &[root, well_known.clone()])?;

    // The cluster's peer protocol (`src/replication/network.rs`).
    let cluster = PathBuf::from("proto/odin/cluster.proto");
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc()?);
    config.bytes([".odin.cluster"]);
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_with_config(
            config,
            std::slice::from_ref(&cluster),
            &[PathBuf::from("proto/odin"), well_known],
        )?;
    println!("cargo:rerun-if-changed={}", cluster.display());

    // The kubelet's pod-resources API and the CRI's container listing, read by the GPU
    // collector (the servers are generated too, for the tests' fakes).
    let kubelet = [
        PathBuf::from("proto/kubelet/podresources.proto"),
        PathBuf::from("proto/kubelet/cri.proto"),
    ];
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc()?);
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_with_config(config, &kubelet, &[PathBuf::from("proto/kubelet")])?;
    for p in &kubelet {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    println!("cargo:rerun-if-env-changed=PROTOC");
    // Naming any rerun-if line turns off cargo's default of rerunning on every
    // change in the package, so the protos must be named too, or an edited proto
    // keeps the old generated code.
    println!("cargo:rerun-if-changed=build.rs");
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    Ok(())
}

/// `$PROTOC` when set, else the vendored protoc.
fn protoc() -> Result<PathBuf, Box<dyn std::error::Error>> {
    Ok(match std::env::var_os("PROTOC") {
        Some(p) => PathBuf::from(p),
        None => protoc_bin_vendored::protoc_bin_path()?,
    })
}
