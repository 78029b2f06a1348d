//! Generates the gRPC code for every AttestMesh protocol from `/proto` with protox (pure Rust), so
//! building needs no `protoc` binary (DESIGN §14).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../proto");
    let files: Vec<String> = ["agent.proto", "peer.proto", "indexer.proto"]
        .iter()
        .map(|f| format!("{proto_dir}/{f}"))
        .collect();
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(&files, [proto_dir])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
