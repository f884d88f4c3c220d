//! The kernel's own modules (`linux-modules-<abi>-amd64` on 7.x; part of the image package on
//! 6.x), for booting a cached kernel with tools that need them, such as virtme-ng (its 9p root).

use std::fs;
use std::path::PathBuf;

use super::{names::Scheme, FetchError, KernelCache, KernelRef, Progress};

impl KernelCache {
    /// Unpacks the modules of `k` next to its image (once; a marker file records it) and returns
    /// the image path inside the unpacked tree, where `<tree>/lib/modules/<release>` holds them.
    pub fn fetch_modules(&self, k: &KernelRef, progress: &dyn Fn(Progress)) -> Result<PathBuf, FetchError> {
        let spec =
            super::names::spec_for(&k.name).ok_or_else(|| FetchError::UnknownKernel(k.name.clone()))?;
        let root = k.dir.join("root");
        let (image_rel, _) = spec.image_paths(&k.abi);
        let image = root.join(image_rel);
        let marker = k.dir.join("modules.done");
        if spec.scheme == Scheme::ImageUnsigned || marker.exists() {
            return Ok(image);
        }
        let apt = self.apt(spec, false, progress)?;
        let package = format!("linux-modules-{}-amd64", k.abi);
        let infos = super::names::parse_show(&apt.show(std::slice::from_ref(&package))?);
        let info = infos
            .into_iter()
            .find(|i| i.package == package && i.version == k.package_version)
            .ok_or_else(|| FetchError::NotFound {
                what: format!("{package}={}", k.package_version),
                suite: apt.suite.clone(),
            })?;
        self.download_unpack(&apt, &[info], &k.dir, &root, progress)?;
        fs::write(&marker, &k.package_version).map_err(|e| FetchError::io(&marker, e))?;
        Ok(image)
    }
}
