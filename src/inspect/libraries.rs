//! The build-time shared-library check: an assembled image's new layers
//! scanned with `inspect`'s layer reader against its base's file list.

use super::python::MergedFs;

/// Build-time check of one assembled image: its new layers' extension
/// modules against the base's files and the new layers' own. The base's file
/// list is learned once per base (its layers' diff_ids) from its layers in
/// the cache and kept under `CACHE/filelists/`; None when the base's layers
/// were never downloaded (a push reuses them remotely) and nothing is cached.
pub fn check_build(
    cache: &crate::cache::Cache,
    image: &crate::image::Image,
) -> std::io::Result<Option<Vec<crate::sharedlibs::MissingLib>>> {
    let Some(base_files) = base_file_list(cache, image)? else {
        return Ok(None);
    };
    let mut fs = MergedFs::default();
    for path in base_files.lines().filter(|l| !l.is_empty()) {
        fs.add_file(path.to_string(), 0, 0);
    }
    for (i, layer) in image.layers[image.new_from()..].iter().enumerate() {
        let blob = std::fs::File::open(cache.blob_path(&layer.descriptor.digest))?;
        super::scan_layer(Box::new(blob), i + 1, &mut fs)?;
    }
    Ok(Some(fs.missing_libraries()))
}

/// The base's files (one path a line), from `CACHE/filelists/KEY` or learned
/// from its cached layers.
fn base_file_list(
    cache: &crate::cache::Cache,
    image: &crate::image::Image,
) -> std::io::Result<Option<String>> {
    use sha2::{Digest as _, Sha256};
    let base_layers = &image.layers[..image.new_from()];
    let base_diff_ids: Vec<String> = base_layers.iter().map(|l| l.diff_id.to_string()).collect();
    let key = hex::encode(Sha256::digest(base_diff_ids.join("\n").as_bytes()));
    let dir = cache.root().join("filelists");
    let path = dir.join(&key);
    match std::fs::read_to_string(&path) {
        Ok(text) => return Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let blobs: Vec<std::path::PathBuf> = base_layers
        .iter()
        .map(|l| cache.blob_path(&l.descriptor.digest))
        .collect();
    if !blobs.iter().all(|b| b.is_file()) {
        return Ok(None);
    }
    let mut fs = MergedFs::default();
    for (i, blob) in blobs.iter().enumerate() {
        super::scan_layer(Box::new(std::fs::File::open(blob)?), i, &mut fs)?;
    }
    let mut text = String::new();
    for file in fs.files.keys() {
        text.push_str(file);
        text.push('\n');
    }
    // Written whole then renamed: a reader sees all of it or nothing.
    std::fs::create_dir_all(&dir)?;
    let mut temp = tempfile::NamedTempFile::new_in(&dir)?;
    std::io::Write::write_all(&mut temp, text.as_bytes())?;
    temp.persist(&path).map_err(|e| e.error)?;
    Ok(Some(text))
}
