#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    orchestrix_chaos::decoders::avro_decode(data);
});
