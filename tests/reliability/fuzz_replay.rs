//! The fuzz targets' checks under `cargo test` (stable): every input kept
//! in `fuzz/regressions/<target>/` (crashes found by `fuzz/run.sh` and
//! hand-made edge cases) is replayed, and proptest feeds each check random
//! bytes and Okta/TOML/Link-shaped text.

use proptest::prelude::*;

#[path = "../../fuzz/checks.rs"]
mod checks;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let result = std::panic::catch_unwind(|| check(&data));
        assert!(result.is_ok(), "{} fails", path.display());
        n += 1;
    }
    n
}

#[test]
fn every_kept_fuzz_input_passes() {
    let n = replay("wire", checks::wire)
        + replay("link_header", checks::link_header)
        + replay("config", checks::config);
    assert!(n >= 9, "{n} regression inputs");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn wire_on_random_bytes(data in prop::collection::vec(any::<u8>(), 0..512)) {
        checks::wire(&data);
    }

    #[test]
    fn wire_on_json_shaped_text(
        parts in prop::collection::vec(prop_oneof![
            Just("[".to_owned()), Just("]".to_owned()), Just("{".to_owned()), Just("}".to_owned()),
            Just(",".to_owned()), Just(":".to_owned()), Just("null".to_owned()),
            Just("\"id\"".to_owned()), Just("\"profile\"".to_owned()), Just("\"_embedded\"".to_owned()),
            Just("\"user\"".to_owned()), Just("\"email\"".to_owned()), Just("\"status\"".to_owned()),
            Just("\"\\u0000\"".to_owned()), Just("1e999".to_owned()), Just("-0".to_owned()),
            "\"[^\"\\\\]{0,8}\"",
        ], 0..40),
    ) {
        checks::wire(parts.concat().as_bytes());
    }

    #[test]
    fn link_header_on_random_text(text in "\\PC{0,200}") {
        checks::link_header(text.as_bytes());
    }

    #[test]
    fn link_header_on_link_shaped_text(
        links in prop::collection::vec(
            (
                prop_oneof![
                    Just("https://acme.okta.com/api/v1/users?after=1".to_owned()),
                    Just("https://evil.example/api/v1/users".to_owned()),
                    Just("//evil.example/x".to_owned()),
                    Just("/api/v1/users?after=2".to_owned()),
                    Just("http://acme.okta.com/api/v1/users".to_owned()),
                    Just("https://acme.okta.com:444/x".to_owned()),
                    "[ -~]{0,30}",
                ],
                prop_oneof![Just("next"), Just("self"), Just("next self"), Just("NEXT"), Just("")],
                any::<bool>(),
            ),
            0..4,
        ),
        sep in prop_oneof![Just(", "), Just("\n"), Just(","), Just(" ,, ")],
    ) {
        let text: Vec<String> = links
            .iter()
            .map(|(t, rel, quoted)| if *quoted { format!("<{t}>; rel=\"{rel}\"") } else { format!("<{t}>; rel={rel}") })
            .collect();
        checks::link_header(text.join(sep).as_bytes());
    }

    #[test]
    fn config_on_random_text(text in "\\PC{0,200}") {
        checks::config(text.as_bytes());
    }

    #[test]
    fn config_on_toml_shaped_text(
        lines in prop::collection::vec(prop_oneof![
            Just("[okta]".to_owned()), Just("[store]".to_owned()), Just("[sync]".to_owned()),
            Just("[safety]".to_owned()), Just("[teams]".to_owned()), Just("[log]".to_owned()),
            Just("org_url = \"https://a.okta.com\"".to_owned()), Just("org_url = \"http://127.0.0.1:1\"".to_owned()),
            Just("org_url = \"http://10.0.0.1\"".to_owned()), Just("app_id = \"0oa1\"".to_owned()),
            Just("request_timeout = \"0s\"".to_owned()), Just("request_timeout = \"99999999999999h\"".to_owned()),
            Just("schedule = \"*/0 * * * *\"".to_owned()), Just("schedule = \"0 0 31 2 *\"".to_owned()),
            Just("schedule = \"* * * * 0-7/3\"".to_owned()), Just("max_deactivations_percent = nan".to_owned()),
            Just("max_deactivations_percent = inf".to_owned()), Just("push_groups = []".to_owned()),
            Just("url = \"sqlite::memory:\"".to_owned()), Just("writes_per_second = 0".to_owned()),
            Just("level = \"info,[\"".to_owned()), Just("api_token_file = \"/dev/zero\"".to_owned()),
            "[a-z_]{1,12} = \"[ -~]{0,12}\"",
            "[a-z_]{1,12} = -?[0-9]{1,20}",
        ], 0..12),
    ) {
        checks::config(lines.join("\n").as_bytes());
    }
}
