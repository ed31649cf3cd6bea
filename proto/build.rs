//! Compiles proto/*.proto with the `protoc` shipped in `protoc-bin-vendored`,
//! so building needs no system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The vendored binary is chosen explicitly rather than trusting whatever
    // `protoc` is on PATH: the generated code must not depend on the host.
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the
    // environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc) };
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Snapshot chunks and log bodies are large; `Bytes` avoids a copy.
        .bytes(".booking.raft.v1")
        .compile_protos(&["proto/booking.proto", "proto/raft.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
