//! Bad bytes: each codec eats over a million seeded random bytes with valid frames planted at
//! random places. It must not panic, and must find every planted frame.

use gym_checkin::reader::codec::{self, Frame};

const NOISE_BYTES: usize = 1_200_000;
const PLANTED: usize = 3_000;

/// Random bytes with `frames` planted at random offsets; returns the stream.
fn plant(rng: &mut fastrand::Rng, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut offsets: Vec<usize> = (0..frames.len())
        .map(|_| rng.usize(0..NOISE_BYTES))
        .collect();
    offsets.sort_unstable();
    let noise: Vec<u8> = (0..NOISE_BYTES).map(|_| rng.u8(..)).collect();
    let mut stream = Vec::with_capacity(NOISE_BYTES + frames.len() * 20);
    let mut from = 0;
    for (offset, frame) in offsets.iter().zip(frames) {
        stream.extend_from_slice(&noise[from..*offset]);
        stream.extend_from_slice(frame);
        from = *offset;
    }
    stream.extend_from_slice(&noise[from..]);
    stream
}

/// Feeds `stream` in random-sized chunks; checks that `expected` appear, in order, among the
/// frames found (noise may also happen to form valid frames of its own).
fn check(protocol: &str, seed: u64, stream: &[u8], expected: &[Frame]) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut codec = (codec::protocol(protocol).unwrap().new_codec)();
    let mut found = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let n = rng.usize(1..=rest.len().min(600));
        codec.feed(&rest[..n], &mut found);
        rest = &rest[n..];
    }
    let mut wanted = expected.iter().peekable();
    for frame in &found {
        if wanted.peek() == Some(&frame) {
            wanted.next();
        }
    }
    let missing = wanted.count();
    let discarded = codec.discarded();
    println!(
        "{protocol}: {} bytes, {} planted, {} found, {} missing, {} noise bytes, {} rejected frames",
        stream.len(),
        expected.len(),
        found.len(),
        missing,
        discarded.noise_bytes,
        discarded.rejected_frames
    );
    assert_eq!(missing, 0, "{protocol} (seed {seed}) lost planted frames");
}

#[test]
fn the_em4100_codec_finds_every_frame_planted_in_random_bytes() {
    let seed = 0x6789_2026;
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut frames = Vec::new();
    let mut expected = Vec::new();
    for i in 0..PLANTED {
        let id: [u8; 5] = std::array::from_fn(|_| rng.u8(..));
        let checksum = id.iter().fold(0, |a, b| a ^ b);
        let mut hex = String::new();
        for b in id.iter().chain([checksum].iter()) {
            hex.push_str(&format!("{b:02X}"));
        }
        if i % 3 == 2 {
            hex = hex.to_lowercase();
        }
        let mut frame = vec![0x02];
        frame.extend_from_slice(hex.as_bytes());
        if i % 2 == 1 {
            frame.extend_from_slice(b"\r\n");
        }
        frame.push(0x03);
        frames.push(frame);
        expected.push(Frame::id(&id));
    }
    let stream = plant(&mut rng, &frames);
    check("em4100", seed, &stream, &expected);
}

#[test]
fn the_line_codec_finds_every_line_planted_in_random_bytes() {
    let seed = 0x1111_2026;
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut frames = Vec::new();
    let mut expected = Vec::new();
    let terminators: [&[u8]; 3] = [b"\r", b"\n", b"\r\n"];
    for _ in 0..PLANTED {
        let id = format!("{:010}", rng.u32(..));
        // A line starts after a terminator: whatever came before ends there.
        let mut frame = b"\n".to_vec();
        frame.extend_from_slice(id.as_bytes());
        frame.extend_from_slice(terminators[rng.usize(0..3)]);
        frames.push(frame);
        expected.push(Frame::Text(id));
    }
    let stream = plant(&mut rng, &frames);
    check("line", seed, &stream, &expected);
}
