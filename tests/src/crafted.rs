//! Hostile input made to order: raw tar entries (valid or not), OCI layouts whose parts lie,
//! and ELF files that ask a parser for too much.
use std::{fs, path::Path};

use sha2::{Digest, Sha256};

const BLOCK: usize = 512;

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(data))
}

/// A ustar header block; `size` is what the header claims, whatever data follows.
pub fn header(name: &[u8], typeflag: u8, size: u64, link: &[u8]) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    b[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    b[100..107].copy_from_slice(b"0000755");
    b[108..115].copy_from_slice(b"0000000");
    b[116..123].copy_from_slice(b"0000000");
    b[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    b[136..147].copy_from_slice(b"00000000000");
    b[156] = typeflag;
    b[157..157 + link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    if typeflag == b'3' || typeflag == b'4' {
        b[329..336].copy_from_slice(b"0000001");
        b[337..344].copy_from_slice(b"0000003");
    }
    checksum(&mut b);
    b
}

pub fn checksum(b: &mut [u8; BLOCK]) {
    b[148..156].copy_from_slice(b"        ");
    let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
    b[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
}

/// One entry: header, data, padding.
pub fn entry(name: &str, typeflag: u8, data: &[u8], link: &str) -> Vec<u8> {
    let mut out = header(
        name.as_bytes(),
        typeflag,
        data.len() as u64,
        link.as_bytes(),
    )
    .to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
    out
}

/// A PAX extended header entry setting `records`.
pub fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (k, v) in records {
        let rest = k.len() + v.len() + 3;
        let mut len = rest + rest.to_string().len();
        if len.to_string().len() != rest.to_string().len() {
            len = rest + len.to_string().len();
        }
        body.extend_from_slice(format!("{len} {k}=").as_bytes());
        body.extend_from_slice(v);
        body.push(b'\n');
    }
    entry("PaxHeaders/x", b'x', &body, "")
}

/// Entries followed by the end-of-archive blocks.
pub fn tar(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = entries.concat();
    out.extend_from_slice(&[0u8; 2 * BLOCK]);
    out
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(data).expect("gzip in memory");
    enc.finish().expect("gzip in memory")
}

/// One layer of a layout: its blob as stored and its media type.
pub struct Layer {
    pub blob: Vec<u8>,
    pub gzip: bool,
    /// The uncompressed tar's digest as the config states it (default: the true one).
    pub diff_id: Option<String>,
}

impl Layer {
    pub fn tar(tar: Vec<u8>) -> Self {
        Layer {
            blob: tar,
            gzip: false,
            diff_id: None,
        }
    }
}

/// Writes an OCI layout of one image whose layers are `layers` (listed in the manifest as
/// `order` gives, by index) into `dir`; the manifest's descriptors get the blobs' true sizes
/// unless `sizes` says otherwise.
pub fn oci_layout(dir: &Path, layers: &[Layer], order: &[usize], size_lie: Option<u64>) {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).expect("layout dir");
    let put = |data: &[u8]| -> String {
        let d = sha256(data);
        fs::write(blobs.join(&d[7..]), data).expect("writing a blob");
        d
    };
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for &i in order {
        let layer = &layers[i];
        let digest = put(&layer.blob);
        let diff_id = layer.diff_id.clone().unwrap_or_else(|| {
            if layer.gzip {
                use std::io::Read;
                let mut tar = Vec::new();
                flate2::read::GzDecoder::new(&layer.blob[..])
                    .read_to_end(&mut tar)
                    .expect("gunzip");
                sha256(&tar)
            } else {
                digest.clone()
            }
        });
        diff_ids.push(diff_id);
        descriptors.push(serde_json::json!({
            "mediaType": if layer.gzip {
                "application/vnd.oci.image.layer.v1.tar+gzip"
            } else {
                "application/vnd.oci.image.layer.v1.tar"
            },
            "digest": digest,
            "size": size_lie.unwrap_or(layer.blob.len() as u64),
        }));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Cmd": ["/bin/true"] },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))
    .unwrap();
    let config_digest = put(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": descriptors,
    }))
    .unwrap();
    let manifest_digest = put(&manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
        }],
    });
    fs::write(dir.join("index.json"), index.to_string()).expect("index.json");
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("oci-layout");
}

/// A 64-bit ELF executable whose dynamic section holds `needed` `DT_NEEDED` entries that all
/// name one string of `name_len` bytes: a parser that copies each entry's string allocates
/// `needed * name_len` bytes.
pub fn amplifying_elf(needed: usize, name_len: usize) -> Vec<u8> {
    const PT_LOAD: u32 = 1;
    const PT_DYNAMIC: u32 = 2;
    const DT_NEEDED: u64 = 1;
    const DT_STRTAB: u64 = 5;
    let phoff = 64u64;
    let dyn_off = phoff + 2 * 56;
    let dyn_len = 16 * (needed as u64 + 2);
    let str_off = dyn_off + dyn_len;
    let total = str_off + name_len as u64 + 1;
    let mut f = vec![0u8; total as usize];
    f[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
    f[0x10..0x12].copy_from_slice(&2u16.to_le_bytes());
    f[0x12..0x14].copy_from_slice(&62u16.to_le_bytes());
    f[0x20..0x28].copy_from_slice(&phoff.to_le_bytes());
    f[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
    f[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
    let mut ph = |i: usize, kind: u32, off: u64, size: u64| {
        let at = phoff as usize + i * 56;
        f[at..at + 4].copy_from_slice(&kind.to_le_bytes());
        f[at + 8..at + 16].copy_from_slice(&off.to_le_bytes());
        f[at + 16..at + 24].copy_from_slice(&off.to_le_bytes());
        f[at + 32..at + 40].copy_from_slice(&size.to_le_bytes());
    };
    ph(0, PT_LOAD, 0, total);
    ph(1, PT_DYNAMIC, dyn_off, dyn_len);
    let mut at = dyn_off as usize;
    let mut put = |tag: u64, val: u64| {
        f[at..at + 8].copy_from_slice(&tag.to_le_bytes());
        f[at + 8..at + 16].copy_from_slice(&val.to_le_bytes());
        at += 16;
    };
    put(DT_STRTAB, str_off);
    for _ in 0..needed {
        put(DT_NEEDED, 0);
    }
    for b in &mut f[str_off as usize..str_off as usize + name_len] {
        *b = b'x';
    }
    f
}
