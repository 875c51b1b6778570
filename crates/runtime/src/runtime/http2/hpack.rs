//! HPACK (RFC 7541): decoding the header blocks clients send.
//!
//! Every stream of a proxy opens with one header block, and clients code
//! its strings with HPACK's Huffman code. The decoder this replaced built
//! a hash map of the whole code for every such string and then walked it
//! a bit at a time: a fifth of kuma-cp's CPU while 10,000 proxies
//! connected. Here the Huffman code is `httlib-huffman`'s, table-driven
//! five bits at a time from tables built into the binary; the rest of
//! HPACK (integers, string literals, the static and dynamic tables) is
//! this module.
//!
//! The server tells clients a table size of 0, so once they have the
//! server's settings nothing is kept; until then a client may use the
//! protocol's initial 4,096 bytes, and the table is kept as it says.

use std::borrow::Cow;
use std::collections::VecDeque;

/// The dynamic table's size until the client has the server's settings
/// (RFC 9113 §6.5.2, SETTINGS_HEADER_TABLE_SIZE's initial value).
const INITIAL_TABLE_SIZE: usize = 4096;

/// What an entry costs in the table besides its name and value (§4.1).
const ENTRY_OVERHEAD: usize = 32;

/// Why a block could not be decoded: the connection's HPACK state is lost
/// (a COMPRESSION_ERROR).
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid(pub &'static str);

/// A table entry: a name and a value.
type Entry = (Box<[u8]>, Box<[u8]>);

/// A decoded field: borrowed from the block where it was a plain string.
type Field<'b> = (Cow<'b, [u8]>, Cow<'b, [u8]>);

/// One connection's decoding state: its dynamic table.
pub struct Decoder {
    /// Newest first, as the table's indices count.
    table: VecDeque<Entry>,
    /// The entries' size as §4.1 counts it.
    size: usize,
    /// The most the table may hold, as the client last set it.
    capacity: usize,
    /// The most the client may set (the server's setting, once the
    /// client has acknowledged it).
    allowed: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            table: VecDeque::new(),
            size: 0,
            capacity: INITIAL_TABLE_SIZE,
            allowed: INITIAL_TABLE_SIZE,
        }
    }
}

impl Decoder {
    /// The client acknowledged a table size of `size`: it may not set a
    /// larger one, and what no longer fits is gone.
    pub fn set_allowed(&mut self, size: usize) {
        self.allowed = size;
        if self.capacity > size {
            self.capacity = size;
            self.evict(0);
        }
    }

    /// Decodes `block`, handing each field to `field` as it comes.
    pub fn decode(
        &mut self,
        block: &[u8],
        mut field: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), Invalid> {
        let mut rest = block;
        let mut first_field = true;
        while let Some(&octet) = rest.first() {
            if octet & 0x80 != 0 {
                // Indexed field (§6.1).
                let (index, after) = integer(rest, 7)?;
                rest = after;
                let (name, value) = self.entry(index)?;
                field(name, value);
            } else if octet & 0x40 != 0 {
                // Literal with incremental indexing (§6.2.1).
                let ((name, value), after) = self.literal(rest, 6)?;
                rest = after;
                field(&name, &value);
                self.insert(&name, &value);
            } else if octet & 0x20 != 0 {
                // Dynamic table size update (§6.3), only before the
                // block's first field (§4.2).
                if !first_field {
                    return Err(Invalid("a table size update after a header field"));
                }
                let (size, after) = integer(rest, 5)?;
                rest = after;
                if size > self.allowed {
                    return Err(Invalid("a table size update above the size allowed"));
                }
                self.capacity = size;
                self.evict(0);
                continue;
            } else {
                // Literal without indexing or never indexed (§6.2.2,
                // §6.2.3): both a 4-bit index.
                let ((name, value), after) = self.literal(rest, 4)?;
                rest = after;
                field(&name, &value);
            }
            first_field = false;
        }
        Ok(())
    }

    /// The entry at `index` (§2.3.3): the static table, then the dynamic.
    fn entry(&self, index: usize) -> Result<(&[u8], &[u8]), Invalid> {
        match index {
            0 => Err(Invalid("index 0")),
            1..=STATIC_ENTRIES => {
                let (name, value) = STATIC_TABLE[index - 1];
                Ok((name.as_bytes(), value.as_bytes()))
            }
            _ => self
                .table
                .get(index - STATIC_ENTRIES - 1)
                .map(|(name, value)| (&name[..], &value[..]))
                .ok_or(Invalid("an index past the table")),
        }
    }

    /// A literal field whose name index has an `n`-bit prefix: its name,
    /// its value, and what follows it. A name from the static table (the
    /// usual case: `content-type`, `user-agent`) is borrowed; one from the
    /// dynamic table is copied, as the field may be added to that table.
    fn literal<'b>(&self, block: &'b [u8], n: u8) -> Result<(Field<'b>, &'b [u8]), Invalid> {
        let (index, rest) = integer(block, n)?;
        let (name, rest) = match index {
            0 => string(rest)?,
            1..=STATIC_ENTRIES => (Cow::Borrowed(STATIC_TABLE[index - 1].0.as_bytes()), rest),
            _ => (Cow::Owned(self.entry(index)?.0.to_vec()), rest),
        };
        let (value, rest) = string(rest)?;
        Ok(((name, value), rest))
    }

    /// Adds an entry, evicting the oldest to make room (§4.4); one larger
    /// than the table empties it. Copied only when it fits: with the
    /// server's table size of 0 nothing does.
    fn insert(&mut self, name: &[u8], value: &[u8]) {
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        if size > self.capacity {
            self.table.clear();
            self.size = 0;
            return;
        }
        self.evict(size);
        self.size += size;
        self.table.push_front((name.into(), value.into()));
    }

    /// Evicts the oldest entries until `room` more fits (§4.3).
    fn evict(&mut self, room: usize) {
        while self.size + room > self.capacity {
            match self.table.pop_back() {
                Some((name, value)) => self.size -= name.len() + value.len() + ENTRY_OVERHEAD,
                None => break,
            }
        }
    }
}

/// An integer with an `n`-bit prefix (§5.1), and what follows it. Values
/// past 2^28 are refused: no size or index here comes near.
fn integer(block: &[u8], n: u8) -> Result<(usize, &[u8]), Invalid> {
    let (&first, mut rest) = block.split_first().ok_or(Invalid("a truncated integer"))?;
    let max = (1usize << n) - 1;
    let mut value = usize::from(first) & max;
    if value < max {
        return Ok((value, rest));
    }
    let mut shift = 0;
    loop {
        let (&octet, after) = rest.split_first().ok_or(Invalid("a truncated integer"))?;
        rest = after;
        value += usize::from(octet & 0x7f) << shift;
        if octet & 0x80 == 0 {
            return Ok((value, rest));
        }
        shift += 7;
        if shift > 21 {
            return Err(Invalid("an integer too large"));
        }
    }
}

/// A string literal (§5.2), Huffman-coded or not, and what follows it.
fn string(block: &[u8]) -> Result<(Cow<'_, [u8]>, &[u8]), Invalid> {
    let huffman = block.first().is_some_and(|octet| octet & 0x80 != 0);
    let (len, rest) = integer(block, 7)?;
    if len > rest.len() {
        return Err(Invalid("a string longer than its block"));
    }
    let (bytes, rest) = rest.split_at(len);
    if !huffman {
        return Ok((Cow::Borrowed(bytes), rest));
    }
    // The Huffman code takes 5 to 30 bits a symbol: at most 8 per 5 bytes.
    let mut decoded = Vec::with_capacity(len * 8 / 5);
    httlib_huffman::decode(bytes, &mut decoded, httlib_huffman::DecoderSpeed::FiveBits)
        .map_err(|_| Invalid("a string whose Huffman code is invalid"))?;
    Ok((Cow::Owned(decoded), rest))
}

const STATIC_ENTRIES: usize = 61;

/// RFC 7541 Appendix A.
const STATIC_TABLE: [(&str, &str); STATIC_ENTRIES] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

#[cfg(test)]
pub(super) mod tests {
    use super::super::tests::Random;
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    /// A field as text, to compare and print.
    fn text(name: &[u8], value: &[u8]) -> (String, String) {
        (
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        )
    }

    fn fields(decoder: &mut Decoder, block: &[u8]) -> Result<Vec<(String, String)>, Invalid> {
        let mut fields = Vec::new();
        decoder.decode(block, |name, value| fields.push(text(name, value)))?;
        Ok(fields)
    }

    /// What `loona-hpack`, a decoder written by others, makes of `blocks`
    /// (one connection's, in order).
    pub(in super::super) fn reference(blocks: &[Vec<u8>]) -> Vec<Vec<(String, String)>> {
        let mut decoder = loona_hpack::Decoder::new();
        blocks
            .iter()
            .map(|block| {
                let mut fields = Vec::new();
                decoder
                    .decode_with_cb(block, |name, value| fields.push(text(&name, &value)))
                    .expect("the reference decodes it");
                fields
            })
            .collect()
    }

    fn owned(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// RFC 7541 C.3 and C.4: three requests on one connection, whose
    /// blocks refer to the entries the ones before added; plain strings,
    /// then the same requests Huffman-coded.
    #[test]
    fn the_rfcs_request_examples_decode_as_it_says() {
        let requests = [
            owned(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
            ]),
            owned(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache"),
            ]),
            owned(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value"),
            ]),
        ];
        let plain = [
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "8286 84be 5808 6e6f 2d63 6163 6865",
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ];
        let huffman = [
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ];
        for blocks in [plain, huffman] {
            let blocks: Vec<Vec<u8>> = blocks.iter().map(|b| hex(b)).collect();
            assert_eq!(reference(&blocks), requests, "the reference agrees");
            let mut decoder = Decoder::default();
            for (block, request) in blocks.iter().zip(&requests) {
                assert_eq!(&fields(&mut decoder, block).unwrap(), request);
            }
            // §C.3.3: the table holds the three entries added, 164 bytes.
            assert_eq!(decoder.table.len(), 3);
            assert_eq!(decoder.size, 164);
        }
    }

    #[test]
    fn blocks_a_client_encodes_decode_as_the_reference_decodes_them() {
        let mut encoder = loona_hpack::Encoder::new();
        let mut random = Random(7);
        let mut next = move || random.next() as usize;
        let names = [
            "content-type",
            "te",
            "grpc-timeout",
            "x-custom",
            ":path",
            "user-agent",
        ];
        let mut blocks = Vec::new();
        for _ in 0..200 {
            let fields: Vec<(Vec<u8>, Vec<u8>)> = (0..1 + next() % 6)
                .map(|_| {
                    let name = names[next() % names.len()].as_bytes().to_vec();
                    let value = format!("v{}", next() % 20).repeat(1 + next() % 50);
                    (name, value.into_bytes())
                })
                .collect();
            blocks.push(encoder.encode(fields.iter().map(|(n, v)| (&n[..], &v[..]))));
        }
        let expected = reference(&blocks);
        let mut decoder = Decoder::default();
        for (block, expected) in blocks.iter().zip(&expected) {
            assert_eq!(&fields(&mut decoder, block).unwrap(), expected);
        }
    }

    #[test]
    fn invalid_blocks_are_refused_with_the_reason() {
        let refused = |block: &[u8]| fields(&mut Decoder::default(), block).unwrap_err();
        assert_eq!(refused(&[0x80]), Invalid("index 0"));
        assert_eq!(refused(&[0x80 | 62]), Invalid("an index past the table"));
        assert_eq!(refused(&[0xff]), Invalid("a truncated integer"));
        assert_eq!(
            refused(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Invalid("an integer too large")
        );
        assert_eq!(
            refused(&[0x00, 0x05, b'a']),
            Invalid("a string longer than its block")
        );
        // A Huffman string of eight 1 bits: padding longer than 7 bits.
        assert_eq!(
            refused(&[0x00, 0x81, 0xff, 0x00]),
            Invalid("a string whose Huffman code is invalid")
        );
        assert_eq!(
            refused(&[0x82, 0x20]),
            Invalid("a table size update after a header field")
        );
        assert_eq!(
            refused(&[0x3f, 0xe2, 0x1f]),
            Invalid("a table size update above the size allowed")
        );
    }

    #[test]
    fn a_table_size_of_zero_once_acknowledged_keeps_nothing() {
        let mut decoder = Decoder::default();
        // custom-key: custom-value, with incremental indexing (C.2.1).
        let added = hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
        fields(&mut decoder, &added).unwrap();
        assert_eq!(
            fields(&mut decoder, &[0x80 | 62]).unwrap(),
            owned(&[("custom-key", "custom-header")])
        );
        decoder.set_allowed(0);
        assert_eq!(decoder.table.len(), 0);
        assert_eq!(
            fields(&mut decoder, &[0x20, 0x80 | 62]).unwrap_err(),
            Invalid("an index past the table")
        );
        assert_eq!(
            fields(&mut decoder, &[0x21]).unwrap_err(),
            Invalid("a table size update above the size allowed")
        );
        fields(&mut decoder, &added).unwrap();
        assert_eq!(
            decoder.table.len(),
            0,
            "added to a table of 0: nothing kept"
        );
    }

    #[test]
    fn random_blocks_end_in_fields_or_a_reason_never_a_panic() {
        let mut random = Random(11);
        let mut next = move || random.next() as u8;
        for _ in 0..20_000 {
            let len = usize::from(next() % 64);
            let block: Vec<u8> = (0..len).map(|_| next()).collect();
            let _ = fields(&mut Decoder::default(), &block);
        }
    }
}
