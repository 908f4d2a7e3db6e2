//! The protobuf wire format, as the encoder writes it: varints, tags and length-delimited
//! fields, appended to a byte buffer.

/// Wire type: varint.
pub const VARINT: u32 = 0;
/// Wire type: eight bytes.
pub const FIXED64: u32 = 1;
/// Wire type: length-delimited.
pub const LEN: u32 = 2;
/// Wire type: four bytes.
pub const FIXED32: u32 = 5;

/// Appends `value` as a base-128 varint.
pub fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The length of `value` as a varint.
pub fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// Appends the tag of field `number` with wire type `wire`.
pub fn tag(out: &mut Vec<u8>, number: u32, wire: u32) {
    varint(out, (u64::from(number) << 3) | u64::from(wire));
}

/// The length of a tag.
pub fn tag_len(number: u32, wire: u32) -> usize {
    varint_len((u64::from(number) << 3) | u64::from(wire))
}

/// Appends length-delimited `data` (after its tag).
pub fn bytes(out: &mut Vec<u8>, data: &[u8]) {
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// Opens a length-delimited field whose length is not known yet: one byte is set aside for
/// it, enough below 128 bytes. Gives where the content starts, for [`close`].
pub fn open(out: &mut Vec<u8>) -> usize {
    out.push(0);
    out.len()
}

/// Closes the field [`open`] opened at `start`: writes its length, moving a content of 128
/// bytes or more up to make room for a longer varint.
pub fn close(out: &mut Vec<u8>, start: usize) {
    let len = out.len() - start;
    if len < 0x80 {
        out[start - 1] = len as u8;
        return;
    }
    let mut length = [0u8; 10];
    let (mut value, mut n) = (len as u64, 0);
    while value >= 0x80 {
        length[n] = (value as u8) | 0x80;
        value >>= 7;
        n += 1;
    }
    length[n] = value as u8;
    let extra = n;
    out.resize(out.len() + extra, 0);
    out.copy_within(start..start + len, start + extra);
    out[start - 1..start + extra].copy_from_slice(&length[..=n]);
}

/// Appends length-delimited content written by `content`.
pub fn delimited<E>(
    out: &mut Vec<u8>,
    content: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
) -> Result<(), E> {
    let start = open(out);
    content(out)?;
    close(out, start);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_a_long_field_moves_its_content_up_for_its_length() {
        for len in [0usize, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
            let mut out = vec![9];
            let start = open(&mut out);
            out.extend((0..len).map(|i| i as u8));
            close(&mut out, start);
            let mut expected = vec![9];
            bytes(&mut expected, &(0..len).map(|i| i as u8).collect::<Vec<_>>());
            assert_eq!(out, expected, "{len}");
            assert_eq!(varint_len(len as u64) + len + 1, out.len());
        }
    }
}
