//! TDS framing and the server's tokens: packets read incrementally from whatever bytes have
//! arrived (the connection also watches for attention while a request runs), messages joined
//! from packets, answers split into packets of the negotiated size. DONE tokens come from
//! `tds-protocol`; the tokens a client never sends (and so that crate does not encode) are
//! written here, following MS-TDS.

use std::io::Write;

use bytes::{BufMut, BytesMut};
use tds_protocol::token::{Done, DoneStatus};

/// Largest message (all packets of one request) the stand-in accepts.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// The packet size the stand-in announces and writes with until a client negotiates another.
pub const PACKET_SIZE: usize = 4096;

/// The packet sizes a client may negotiate in LOGIN7 (SQL Server's bounds).
pub const MIN_PACKET_SIZE: usize = 512;
pub const MAX_PACKET_SIZE: usize = 32767;

/// Packet types (MS-TDS 2.2.3.1.1), as bytes: the stand-in answers unknown ones itself.
pub const PACKET_SQL_BATCH: u8 = 0x01;
pub const PACKET_RPC: u8 = 0x03;
pub const PACKET_TABULAR_RESULT: u8 = 0x04;
pub const PACKET_ATTENTION: u8 = 0x06;
pub const PACKET_TRANSACTION_MANAGER: u8 = 0x0E;
pub const PACKET_LOGIN7: u8 = 0x10;
pub const PACKET_PRELOGIN: u8 = 0x12;

/// Packet status bits (MS-TDS 2.2.3.1.2).
const STATUS_EOM: u8 = 0x01;
const STATUS_IGNORE: u8 = 0x02;

const HEADER: usize = 8;

pub const TOKEN_COLMETADATA: u8 = 0x81;
pub const TOKEN_ERROR: u8 = 0xAA;
pub const TOKEN_LOGINACK: u8 = 0xAD;
pub const TOKEN_ROW: u8 = 0xD1;
pub const TOKEN_ENVCHANGE: u8 = 0xE3;
pub const TOKEN_RETURNSTATUS: u8 = 0x79;
pub const TOKEN_DONEPROC: u8 = 0xFE;
pub const TOKEN_DONEINPROC: u8 = 0xFF;

pub const DONE_MORE: u16 = 0x0001;
pub const DONE_ERROR: u16 = 0x0002;
pub const DONE_INXACT: u16 = 0x0004;
pub const DONE_COUNT: u16 = 0x0010;
pub const DONE_ATTN: u16 = 0x0020;

/// One TDS packet as it came off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub kind: u8,
    pub status: u8,
    pub payload: Vec<u8>,
}

/// Takes one whole packet off the front of `buf`; `None` while it holds only part of one.
pub fn take_packet(buf: &mut Vec<u8>) -> std::io::Result<Option<Packet>> {
    if buf.len() < HEADER {
        return Ok(None);
    }
    let length = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if length < HEADER {
        return Err(invalid(format!(
            "packet length {length} is shorter than its 8-byte header"
        )));
    }
    if buf.len() < length {
        return Ok(None);
    }
    let packet = Packet {
        kind: buf[0],
        status: buf[1],
        payload: buf[HEADER..length].to_vec(),
    };
    buf.drain(..length);
    Ok(Some(packet))
}

/// Joins packets into messages (MS-TDS 2.2.3.1: a message ends with the EOM status bit).
#[derive(Debug, Default)]
pub struct Messages {
    kind: Option<u8>,
    payload: Vec<u8>,
}

impl Messages {
    /// Adds a packet; at a message's last packet returns `(packet type, whole payload)`. A
    /// message the client ends with the IGNORE bit (a request it abandoned part-way) is dropped.
    pub fn push(&mut self, packet: Packet) -> std::io::Result<Option<(u8, Vec<u8>)>> {
        if packet.kind == PACKET_ATTENTION {
            // An attention stands alone, even between the packets of an abandoned request.
            self.kind = None;
            self.payload.clear();
            return Ok(Some((PACKET_ATTENTION, Vec::new())));
        }
        if self.payload.len() + packet.payload.len() > MAX_MESSAGE {
            return Err(invalid(format!(
                "message larger than the stand-in's limit of {MAX_MESSAGE} bytes"
            )));
        }
        let kind = *self.kind.get_or_insert(packet.kind);
        self.payload.extend_from_slice(&packet.payload);
        if packet.status & STATUS_EOM == 0 {
            return Ok(None);
        }
        self.kind = None;
        let payload = std::mem::take(&mut self.payload);
        if packet.status & STATUS_IGNORE != 0 {
            return Ok(None);
        }
        Ok(Some((kind, payload)))
    }

    /// Whether part of a message has arrived and the rest is awaited.
    pub fn partial(&self) -> bool {
        self.kind.is_some()
    }
}

/// `payload` as a message of `kind`, split into packets of at most `packet_size` bytes.
pub fn frame(kind: u8, payload: &[u8], packet_size: usize) -> Vec<u8> {
    let chunk = packet_size.clamp(MIN_PACKET_SIZE, MAX_PACKET_SIZE) - HEADER;
    let mut out = BytesMut::with_capacity(payload.len() + HEADER * (payload.len() / chunk + 1));
    let mut chunks = payload.chunks(chunk).peekable();
    let mut packet_id = 1u8;
    if chunks.peek().is_none() {
        put_header(&mut out, kind, 0, true, packet_id);
    }
    while let Some(part) = chunks.next() {
        put_header(
            &mut out,
            kind,
            part.len(),
            chunks.peek().is_none(),
            packet_id,
        );
        out.put_slice(part);
        packet_id = packet_id.wrapping_add(1);
    }
    out.to_vec()
}

/// Writes `payload` as a tabular-result message in packets of the default size.
pub fn write_message<W: Write>(writer: &mut W, payload: &[u8]) -> std::io::Result<()> {
    writer.write_all(&frame(PACKET_TABULAR_RESULT, payload, PACKET_SIZE))?;
    writer.flush()
}

fn put_header(out: &mut BytesMut, kind: u8, len: usize, last: bool, packet_id: u8) {
    out.put_u8(kind);
    out.put_u8(if last { STATUS_EOM } else { 0 });
    out.put_u16((len + HEADER) as u16);
    out.put_u16(0); // SPID
    out.put_u8(packet_id);
    out.put_u8(0); // window
}

pub fn invalid(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

/// UTF-16LE bytes of a string.
pub fn ucs2(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

/// B_VARCHAR: one byte of length in characters, then UTF-16LE.
pub fn put_b_varchar(out: &mut BytesMut, text: &str) {
    let units: Vec<u16> = text.encode_utf16().take(255).collect();
    out.put_u8(units.len() as u8);
    for unit in units {
        out.put_u16_le(unit);
    }
}

/// US_VARCHAR: two bytes of length in characters, then UTF-16LE.
pub fn put_us_varchar(out: &mut BytesMut, text: &str) {
    let units: Vec<u16> = text.encode_utf16().take(u16::MAX as usize).collect();
    out.put_u16_le(units.len() as u16);
    for unit in units {
        out.put_u16_le(unit);
    }
}

/// A token whose body starts with a two-byte length.
fn put_with_length(out: &mut BytesMut, token: u8, body: &[u8]) {
    out.put_u8(token);
    out.put_u16_le(body.len() as u16);
    out.put_slice(body);
}

pub fn put_done(out: &mut BytesMut, token: u8, status: u16, row_count: u64) {
    let done = Done {
        status: DoneStatus::from_bits(status),
        cur_cmd: 0xC1,
        row_count,
    };
    let start = out.len();
    done.encode(out);
    // `Done::encode` writes the DONE token byte; DONEPROC and DONEINPROC share its layout.
    out[start] = token;
}

pub fn put_error(out: &mut BytesMut, number: u32, class: u8, message: &str) {
    let mut body = BytesMut::new();
    body.put_u32_le(number);
    body.put_u8(1); // state
    body.put_u8(class);
    put_us_varchar(&mut body, message);
    put_b_varchar(&mut body, "mamut-sim");
    put_b_varchar(&mut body, "");
    body.put_u32_le(1); // line number
    put_with_length(out, TOKEN_ERROR, &body);
}

/// ENVCHANGE with B_VARCHAR values (database, language, packet size).
pub fn put_envchange_text(out: &mut BytesMut, kind: u8, new: &str, old: &str) {
    let mut body = BytesMut::new();
    body.put_u8(kind);
    put_b_varchar(&mut body, new);
    put_b_varchar(&mut body, old);
    put_with_length(out, TOKEN_ENVCHANGE, &body);
}

/// ENVCHANGE with B_VARBYTE values (collation, transaction descriptors).
pub fn put_envchange_bytes(out: &mut BytesMut, kind: u8, new: &[u8], old: &[u8]) {
    let mut body = BytesMut::new();
    body.put_u8(kind);
    body.put_u8(new.len() as u8);
    body.put_slice(new);
    body.put_u8(old.len() as u8);
    body.put_slice(old);
    put_with_length(out, TOKEN_ENVCHANGE, &body);
}

pub fn put_login_ack(out: &mut BytesMut, tds_version: u32) {
    let mut body = BytesMut::new();
    body.put_u8(1); // SQL_TSQL
    body.put_u32(tds_version); // big-endian on the wire
    put_b_varchar(&mut body, "mamut-sim");
    body.put_slice(&[16, 0, 0, 1]); // reports itself as a SQL Server 2022-like 16.0
    put_with_length(out, TOKEN_LOGINACK, &body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(kind: u8, status: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![kind, status];
        out.extend_from_slice(&((payload.len() + HEADER) as u16).to_be_bytes());
        out.extend_from_slice(&[0, 0, 1, 0]);
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn a_packet_is_taken_only_once_it_is_whole() {
        let whole = packet(PACKET_SQL_BATCH, STATUS_EOM, b"abc");
        let mut buf = whole[..5].to_vec();
        assert_eq!(take_packet(&mut buf).expect("valid so far"), None);
        buf.extend_from_slice(&whole[5..]);
        buf.extend_from_slice(&whole[..2]);
        let taken = take_packet(&mut buf).expect("valid").expect("whole");
        assert_eq!(taken.payload, b"abc");
        assert_eq!(buf, whole[..2], "the next packet's start stays");
        let mut short = vec![PACKET_SQL_BATCH, STATUS_EOM, 0, 7, 0, 0, 1, 0];
        assert!(take_packet(&mut short).is_err());
    }

    #[test]
    fn packets_join_into_messages_and_ignored_or_attention_cut_them() {
        let mut messages = Messages::default();
        let first = Packet {
            kind: PACKET_RPC,
            status: 0,
            payload: b"ab".to_vec(),
        };
        assert_eq!(messages.push(first.clone()).expect("ok"), None);
        assert!(messages.partial());
        let last = Packet {
            kind: PACKET_RPC,
            status: STATUS_EOM,
            payload: b"cd".to_vec(),
        };
        assert_eq!(
            messages.push(last.clone()).expect("ok"),
            Some((PACKET_RPC, b"abcd".to_vec()))
        );
        // The client abandons a request with the IGNORE bit: nothing to run.
        messages.push(first.clone()).expect("ok");
        let ignored = Packet {
            status: STATUS_EOM | STATUS_IGNORE,
            ..last.clone()
        };
        assert_eq!(messages.push(ignored).expect("ok"), None);
        assert!(!messages.partial());
        // An attention between the packets of a request stands alone and drops the request.
        messages.push(first).expect("ok");
        let attention = Packet {
            kind: PACKET_ATTENTION,
            status: STATUS_EOM,
            payload: Vec::new(),
        };
        assert_eq!(
            messages.push(attention).expect("ok"),
            Some((PACKET_ATTENTION, Vec::new()))
        );
        assert!(!messages.partial());
    }

    #[test]
    fn a_message_beyond_the_limit_is_an_error() {
        let mut messages = Messages::default();
        let chunk = vec![0u8; 65_000];
        let mut outcome = Ok(None);
        for _ in 0..=(MAX_MESSAGE / chunk.len()) {
            outcome = messages.push(Packet {
                kind: PACKET_SQL_BATCH,
                status: 0,
                payload: chunk.clone(),
            });
            if outcome.is_err() {
                break;
            }
        }
        assert!(outcome.is_err());
    }

    #[test]
    fn answers_are_split_at_the_packet_size_with_eom_on_the_last() {
        let payload = vec![7u8; 1200];
        let mut framed = frame(PACKET_TABULAR_RESULT, &payload, 512);
        let mut packets = Vec::new();
        while let Some(p) = take_packet(&mut framed).expect("valid") {
            packets.push(p);
        }
        let sizes: Vec<usize> = packets.iter().map(|p| p.payload.len()).collect();
        assert_eq!(sizes, vec![504, 504, 192]);
        let eom: Vec<bool> = packets.iter().map(|p| p.status & STATUS_EOM != 0).collect();
        assert_eq!(eom, vec![false, false, true]);
        let mut empty = frame(PACKET_TABULAR_RESULT, &[], 4096);
        let only = take_packet(&mut empty).expect("valid").expect("one packet");
        assert_eq!((only.payload.len(), only.status), (0, STATUS_EOM));
    }
}
