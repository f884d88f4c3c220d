//! Unpacking `.deb` files in Rust (what `dpkg-deb -x` does): the `ar` container, then
//! `data.tar`, `data.tar.xz` or `data.tar.zst` into a directory.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

/// How the data member of a .deb is compressed, from its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataCompression {
    None,
    Xz,
    Zstd,
}

/// Recognises the `data.tar*` member of a .deb.
pub fn data_member(identifier: &[u8]) -> Option<DataCompression> {
    match identifier {
        b"data.tar" => Some(DataCompression::None),
        b"data.tar.xz" => Some(DataCompression::Xz),
        b"data.tar.zst" => Some(DataCompression::Zstd),
        _ => None,
    }
}

/// A reader that reports how many bytes went through it.
struct Counting<'a, R> {
    inner: R,
    done: u64,
    report: &'a mut dyn FnMut(u64),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        (self.report)(self.done);
        Ok(n)
    }
}

/// Unpacks the data member of `deb` under `dest`; `progress` gets the bytes of the .deb read so far.
pub fn unpack_deb(deb: &Path, dest: &Path, progress: &mut dyn FnMut(u64)) -> io::Result<()> {
    let file = BufReader::new(File::open(deb)?);
    let counting = Counting { inner: file, done: 0, report: progress };
    let mut ar = ar::Archive::new(counting);
    while let Some(entry) = ar.next_entry() {
        let entry = entry?;
        let Some(kind) = data_member(entry.header().identifier()) else { continue };
        let reader: Box<dyn Read + '_> = match kind {
            DataCompression::None => Box::new(entry),
            DataCompression::Xz => Box::new(liblzma::read::XzDecoder::new(entry)),
            DataCompression::Zstd => Box::new(zstd::stream::read::Decoder::new(entry)?),
        };
        let mut tar = tar::Archive::new(reader);
        tar.set_preserve_permissions(true);
        tar.set_overwrite(true);
        tar.unpack(dest)?;
        return Ok(());
    }
    Err(io::Error::new(io::ErrorKind::InvalidData, format!("{}: no data.tar member", deb.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a .deb-shaped ar archive with one data member.
    fn make_deb(dir: &Path, member: &str, compress: fn(Vec<u8>) -> Vec<u8>) -> std::path::PathBuf {
        let mut tarball = tar::Builder::new(Vec::new());
        let body = b"vmlinuz bytes";
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tarball.append_data(&mut h, "./boot/vmlinuz-x", &body[..]).unwrap();
        let data = compress(tarball.into_inner().unwrap());
        let path = dir.join("t.deb");
        let mut ar = ar::Builder::new(File::create(&path).unwrap());
        ar.append(&ar::Header::new(b"debian-binary".to_vec(), 4), &b"2.0\n"[..]).unwrap();
        ar.append(&ar::Header::new(member.as_bytes().to_vec(), data.len() as u64), &data[..]).unwrap();
        path
    }

    fn check(member: &str, compress: fn(Vec<u8>) -> Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let deb = make_deb(dir.path(), member, compress);
        let dest = dir.path().join("x");
        let mut last = 0;
        unpack_deb(&deb, &dest, &mut |n| last = n).unwrap();
        assert_eq!(std::fs::read(dest.join("boot/vmlinuz-x")).unwrap(), b"vmlinuz bytes");
        assert!(last > 0);
    }

    #[test]
    fn unpacks_plain_xz_and_zstd() {
        check("data.tar", |v| v);
        check("data.tar.xz", |v| {
            let mut out = Vec::new();
            liblzma::read::XzEncoder::new(&v[..], 6).read_to_end(&mut out).unwrap();
            out
        });
        check("data.tar.zst", |v| zstd::encode_all(&v[..], 3).unwrap());
    }

    #[test]
    fn missing_data_member_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let deb = make_deb(dir.path(), "control.tar.xz", |v| v);
        assert!(unpack_deb(&deb, &dir.path().join("x"), &mut |_| {}).is_err());
    }
}
