//! Generates the scipcache.v1 code with a vendored protoc, so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // prost-build finds protoc through $PROTOC.
    unsafe_set_protoc(&protoc);
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("scipcache_descriptor.bin"))
        .bytes(".scipcache.v1")
        .compile_protos(&["proto/scipcache/v1/scipcache.proto"], &["proto"])?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}

#[allow(unsafe_code)]
fn unsafe_set_protoc(path: &std::path::Path) {
    // SAFETY: called before any other thread exists in this build script.
    unsafe { std::env::set_var("PROTOC", path) };
}
