//! # 2. Frames, by hand
//!
//! Teaches: the frame header of RFC 6455 §5.2 bit by bit (FIN, RSV, opcode, MASK, the three
//! payload-length forms), and masking (§5.3) octet by octet, using the examples of §5.7.
//!
//! Run: `cargo run -p examples --example 02_frames`. Next: `03_conversation.rs`.

use std::fmt::Write;

use wsproto::frame::mask::apply_mask;
use wsproto::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

/// Decodes one frame and explains every field.
fn explain(out: &mut String, title: &str, wire: &[u8]) {
    let _ = writeln!(out, "\n{title}\n  wire: {}", hex(wire));
    let Ok(Some((h, used))) = FrameHeader::decode(wire) else {
        let _ = writeln!(out, "  (not a complete, valid header)");
        return;
    };
    let _ = writeln!(
        out,
        "  byte 0 = {:08b}: FIN={} RSV={:03b} opcode={:?} ({:#x})",
        wire[0],
        u8::from(h.fin),
        h.rsv,
        h.opcode,
        h.opcode.as_u8()
    );
    let form = match wire[1] & 0x7f {
        126 => "126: the next 2 bytes hold the length",
        127 => "127: the next 8 bytes hold the length",
        _ => "0-125: the length itself",
    };
    let _ = writeln!(
        out,
        "  byte 1 = {:08b}: MASK={} length field {} -> {} bytes",
        wire[1],
        u8::from(h.mask.is_some()),
        form,
        h.payload_len
    );
    let payload = &wire[used..];
    if let Some(key) = h.mask {
        let _ = writeln!(out, "  masking key: {}", hex(&key));
        let _ = writeln!(out, "  unmasking, octet i XOR key[i % 4]:");
        for (i, &b) in payload.iter().enumerate() {
            let k = key[i % 4];
            let _ = writeln!(out, "    {b:02x} ^ {k:02x} = {:02x} {:?}", b ^ k, char::from(b ^ k));
        }
    }
    let mut clear = payload.to_vec();
    if let Some(key) = h.mask {
        apply_mask(&mut clear, key, 0);
    }
    if clear.len() <= 32 {
        let _ = writeln!(out, "  payload: {:?}", String::from_utf8_lossy(&clear));
    } else {
        let _ = writeln!(out, "  payload: {} bytes", clear.len());
    }
}

/// Explains the §5.7 examples, then encodes one frame of our own.
pub fn frames() -> String {
    let mut out = String::new();
    explain(&mut out, "§5.7 a single-frame unmasked text message", &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    explain(
        &mut out,
        "§5.7 a single-frame masked text message (client to server)",
        &[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58],
    );
    explain(&mut out, "§5.7 a fragmented message, first fragment (FIN=0)", &[0x01, 0x03, 0x48, 0x65, 0x6c]);
    explain(&mut out, "§5.7 ... and the last (opcode 0 = continuation, FIN=1)", &[0x80, 0x02, 0x6c, 0x6f]);
    explain(&mut out, "§5.7 an unmasked ping", &[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    let mut big = vec![0x82, 0x7e, 0x01, 0x00];
    big.extend(vec![0u8; 256]);
    explain(&mut out, "§5.7 256 bytes of binary: the 16-bit length form", &big);

    // Encoding: a masked "Hi" as a client would send it.
    let key = [0x01, 0x02, 0x03, 0x04];
    let header = FrameHeader { fin: true, rsv: 0, opcode: OpCode::Text, mask: Some(key), payload_len: 2 };
    let mut head = [0u8; MAX_HEADER_LEN];
    let used = header.encode(&mut head);
    let mut wire = head[..used].to_vec();
    let mut payload = *b"Hi";
    apply_mask(&mut payload, key, 0);
    wire.extend_from_slice(&payload);
    explain(&mut out, "our own: a masked \"Hi\" with key 01 02 03 04", &wire);
    out
}

fn main() {
    print!("{}", frames());
}

#[cfg(test)]
mod tests {
    #[test]
    fn explains_the_rfc_examples() {
        let out = super::frames();
        assert!(out.contains("7f ^ 37 = 48 'H'"), "masking shown octet by octet");
        assert!(out.contains("126: the next 2 bytes hold the length -> 256 bytes"));
        assert!(out.contains("payload: \"Hello\""));
        assert!(out.contains("wire: 81 82 01 02 03 04 49 6b"));
    }
}
