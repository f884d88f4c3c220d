//! eBPF instructions: the 8-byte `struct bpf_insn` and its opcode fields (include/uapi/linux/bpf.h,
//! bpf_common.h). `ld_imm64` occupies two slots; the second slot has code 0.

use serde::{Deserialize, Serialize};

// Instruction classes.
pub const BPF_LD: u8 = 0x00;
pub const BPF_LDX: u8 = 0x01;
pub const BPF_ST: u8 = 0x02;
pub const BPF_STX: u8 = 0x03;
pub const BPF_ALU: u8 = 0x04;
pub const BPF_JMP: u8 = 0x05;
pub const BPF_JMP32: u8 = 0x06;
pub const BPF_ALU64: u8 = 0x07;

// Sizes.
pub const BPF_W: u8 = 0x00;
pub const BPF_H: u8 = 0x08;
pub const BPF_B: u8 = 0x10;
pub const BPF_DW: u8 = 0x18;

// Modes.
pub const BPF_IMM: u8 = 0x00;
pub const BPF_ABS: u8 = 0x20;
pub const BPF_IND: u8 = 0x40;
pub const BPF_MEM: u8 = 0x60;
pub const BPF_MEMSX: u8 = 0x80;
pub const BPF_ATOMIC: u8 = 0xc0;

// Source.
pub const BPF_K: u8 = 0x00;
pub const BPF_X: u8 = 0x08;

// ALU operations.
pub const BPF_ADD: u8 = 0x00;
pub const BPF_SUB: u8 = 0x10;
pub const BPF_MUL: u8 = 0x20;
pub const BPF_DIV: u8 = 0x30;
pub const BPF_OR: u8 = 0x40;
pub const BPF_AND: u8 = 0x50;
pub const BPF_LSH: u8 = 0x60;
pub const BPF_RSH: u8 = 0x70;
pub const BPF_NEG: u8 = 0x80;
pub const BPF_MOD: u8 = 0x90;
pub const BPF_XOR: u8 = 0xa0;
pub const BPF_MOV: u8 = 0xb0;
pub const BPF_ARSH: u8 = 0xc0;
pub const BPF_END: u8 = 0xd0;

// Jump operations.
pub const BPF_JA: u8 = 0x00;
pub const BPF_JEQ: u8 = 0x10;
pub const BPF_JGT: u8 = 0x20;
pub const BPF_JGE: u8 = 0x30;
pub const BPF_JSET: u8 = 0x40;
pub const BPF_JNE: u8 = 0x50;
pub const BPF_JSGT: u8 = 0x60;
pub const BPF_JSGE: u8 = 0x70;
pub const BPF_CALL: u8 = 0x80;
pub const BPF_EXIT: u8 = 0x90;
pub const BPF_JLT: u8 = 0xa0;
pub const BPF_JLE: u8 = 0xb0;
pub const BPF_JSLT: u8 = 0xc0;
pub const BPF_JSLE: u8 = 0xd0;
pub const BPF_JCOND: u8 = 0xe0;

// Atomic operations (imm of BPF_STX | BPF_ATOMIC).
pub const BPF_FETCH: i32 = 0x01;
pub const BPF_XCHG: i32 = 0xe0 | BPF_FETCH;
pub const BPF_CMPXCHG: i32 = 0xf0 | BPF_FETCH;
pub const BPF_LOAD_ACQ: i32 = 0x100;
pub const BPF_STORE_REL: i32 = 0x110;

// Pseudo sources.
/// `ld_imm64` src_reg: imm is a map fd.
pub const BPF_PSEUDO_MAP_FD: u8 = 1;
/// `ld_imm64` src_reg: imm is a map fd, next imm is an offset into its value.
pub const BPF_PSEUDO_MAP_VALUE: u8 = 2;
/// `ld_imm64` src_reg: imm is a BTF id of a kernel variable.
pub const BPF_PSEUDO_BTF_ID: u8 = 3;
/// `ld_imm64` src_reg: imm is the instruction offset of a subprogram.
pub const BPF_PSEUDO_FUNC: u8 = 4;
/// `ld_imm64` src_reg: imm is an index into fd_array of a map.
pub const BPF_PSEUDO_MAP_IDX: u8 = 5;
/// `ld_imm64` src_reg: index into fd_array, next imm is a value offset.
pub const BPF_PSEUDO_MAP_IDX_VALUE: u8 = 6;
/// call src_reg: bpf-to-bpf call, imm is the relative offset.
pub const BPF_PSEUDO_CALL: u8 = 1;
/// call src_reg: kfunc call, imm is a BTF id, off an fd_array index (0 = vmlinux).
pub const BPF_PSEUDO_KFUNC_CALL: u8 = 2;

/// One 8-byte eBPF instruction slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    /// Builds an instruction slot.
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Insn { code, dst, src, off, imm }
    }
    /// The instruction class (low three bits of the opcode).
    pub const fn class(&self) -> u8 {
        self.code & 0x07
    }
    /// The ALU/JMP operation bits.
    pub const fn op(&self) -> u8 {
        self.code & 0xf0
    }
    /// The source bit (BPF_K or BPF_X).
    pub const fn source(&self) -> u8 {
        self.code & 0x08
    }
    /// The load/store size bits.
    pub const fn size(&self) -> u8 {
        self.code & 0x18
    }
    /// The load/store mode bits.
    pub const fn mode(&self) -> u8 {
        self.code & 0xe0
    }
    /// Size in bytes of a load/store of this instruction.
    pub const fn size_bytes(&self) -> u8 {
        match self.size() {
            BPF_W => 4,
            BPF_H => 2,
            BPF_B => 1,
            _ => 8,
        }
    }
    /// True for the first slot of a 16-byte `ld_imm64`.
    pub const fn is_ld_imm64(&self) -> bool {
        self.code == (BPF_LD | BPF_DW | BPF_IMM)
    }
    /// True for `call` (helper, kfunc or bpf-to-bpf).
    pub const fn is_call(&self) -> bool {
        self.code == (BPF_JMP | BPF_CALL)
    }
    /// True for `exit`.
    pub const fn is_exit(&self) -> bool {
        self.code == (BPF_JMP | BPF_EXIT)
    }
    /// True for a bpf-to-bpf call.
    pub const fn is_pseudo_call(&self) -> bool {
        self.is_call() && self.src == BPF_PSEUDO_CALL
    }
    /// The instruction a bpf-to-bpf call or a `BPF_PSEUDO_FUNC` `ld_imm64` at `pc` names
    /// (`pc + imm + 1`, which may lie outside the program), None for any other instruction
    /// (`add_subprog_and_kfunc()`'s two cases).
    pub const fn subprog_target(&self, pc: usize) -> Option<i64> {
        if self.is_pseudo_call() || (self.is_ld_imm64() && self.src == BPF_PSEUDO_FUNC) {
            Some(pc as i64 + self.imm as i64 + 1)
        } else {
            None
        }
    }
    /// True for a kfunc call.
    pub const fn is_kfunc_call(&self) -> bool {
        self.is_call() && self.src == BPF_PSEUDO_KFUNC_CALL
    }
    /// True for a helper call.
    pub const fn is_helper_call(&self) -> bool {
        self.is_call() && self.src == 0
    }

    /// Encodes the slot as the kernel's little-endian `struct bpf_insn`.
    pub fn to_bytes(&self) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[0] = self.code;
        b[1] = (self.dst & 0x0f) | ((self.src & 0x0f) << 4);
        b[2..4].copy_from_slice(&self.off.to_le_bytes());
        b[4..8].copy_from_slice(&self.imm.to_le_bytes());
        b
    }

    /// Decodes one little-endian `struct bpf_insn`.
    pub fn from_bytes(b: [u8; 8]) -> Self {
        Insn {
            code: b[0],
            dst: b[1] & 0x0f,
            src: b[1] >> 4,
            off: i16::from_le_bytes([b[2], b[3]]),
            imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

/// Encodes a program as the byte image passed to `BPF_PROG_LOAD`.
pub fn encode(insns: &[Insn]) -> Vec<u8> {
    insns.iter().flat_map(|i| i.to_bytes()).collect()
}

/// Decodes a byte image; trailing bytes that do not form a whole slot are an error.
pub fn decode(bytes: &[u8]) -> Result<Vec<Insn>, DecodeError> {
    if !bytes.len().is_multiple_of(8) {
        return Err(DecodeError::TrailingBytes(bytes.len() % 8));
    }
    Ok(bytes.chunks_exact(8).map(|c| Insn::from_bytes(c.try_into().expect("chunk of 8"))).collect())
}

/// Serde for a `Vec<Insn>` as the hex string of its byte image ([`encode`]: 16 digits a slot),
/// the form the protocol's `Run` carries: under TCG the agent decoded an array of five-field
/// objects per instruction several times slower (docs/speed.md, session 11).
pub mod hex_image {
    use super::Insn;
    use serde::{Deserialize, Deserializer, Serializer};

    const DIGITS: &[u8; 16] = b"0123456789abcdef";

    pub fn serialize<S: Serializer>(insns: &[Insn], s: S) -> Result<S::Ok, S::Error> {
        if !s.is_human_readable() {
            // The binary `Run` ([`crate::wire`]): the image itself.
            return s.serialize_bytes(&super::encode(insns));
        }
        let mut out = Vec::with_capacity(insns.len() * 16);
        for i in insns {
            for b in i.to_bytes() {
                out.push(DIGITS[(b >> 4) as usize]);
                out.push(DIGITS[(b & 15) as usize]);
            }
        }
        s.serialize_str(std::str::from_utf8(&out).expect("hex digits are ASCII"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Insn>, D::Error> {
        if !d.is_human_readable() {
            let image = <&'de [u8]>::deserialize(d)?;
            return super::decode(image).map_err(serde::de::Error::custom);
        }
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse(&s).map_err(serde::de::Error::custom)
    }

    /// The slots of a hex image (lower or upper case digits).
    pub fn parse(s: &str) -> Result<Vec<Insn>, String> {
        let b = s.as_bytes();
        if !b.len().is_multiple_of(16) {
            return Err(format!("an instruction image of {} hex digits (not whole slots of 16)", b.len()));
        }
        let digit = |c: u8| -> Result<u8, String> {
            match c {
                b'0'..=b'9' => Ok(c - b'0'),
                b'a'..=b'f' => Ok(c - b'a' + 10),
                b'A'..=b'F' => Ok(c - b'A' + 10),
                _ => Err(format!("{:?} is not a hex digit", c as char)),
            }
        };
        let mut out = Vec::with_capacity(b.len() / 16);
        for slot in b.chunks_exact(16) {
            let mut raw = [0u8; 8];
            for (k, r) in raw.iter_mut().enumerate() {
                *r = digit(slot[2 * k])? << 4 | digit(slot[2 * k + 1])?;
            }
            out.push(Insn::from_bytes(raw));
        }
        Ok(out)
    }
}

/// Errors decoding an instruction image.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("{0} trailing bytes after the last whole instruction")]
    TrailingBytes(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip() {
        let i = Insn::new(BPF_STX | BPF_MEM | BPF_W, 10, 1, -4, 0);
        assert_eq!(Insn::from_bytes(i.to_bytes()), i);
        assert_eq!(i.to_bytes()[1], 0x1a);
    }

    #[test]
    fn the_hex_image_round_trips_and_refuses_partial_slots() {
        let insns = vec![
            Insn::new(BPF_STX | BPF_MEM | BPF_W, 10, 1, -4, 0),
            Insn::new(BPF_LD | BPF_DW | BPF_IMM, 1, BPF_PSEUDO_MAP_VALUE, 0, -1),
            Insn::new(0, 0, 0, i16::MIN, i32::MIN),
        ];
        #[derive(serde::Serialize, serde::Deserialize)]
        struct W(#[serde(with = "hex_image")] Vec<Insn>);
        let json = serde_json::to_string(&W(insns.clone())).unwrap();
        assert_eq!(json.len(), 2 + 16 * insns.len(), "{json}");
        assert!(json.starts_with("\"631a"), "{json}");
        assert_eq!(serde_json::from_str::<W>(&json).unwrap().0, insns);
        assert_eq!(hex_image::parse(&json[1..json.len() - 1].to_uppercase()).unwrap(), insns);
        assert!(hex_image::parse("631a").is_err());
        assert!(hex_image::parse("631afcff0000000g").is_err());
    }

    #[test]
    fn trailing_bytes_rejected() {
        assert_eq!(decode(&[0; 9]), Err(DecodeError::TrailingBytes(1)));
    }
}
