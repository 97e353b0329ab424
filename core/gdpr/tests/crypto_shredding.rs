//! Crypto-shredding end to end on the in-memory store: what is stored, what
//! aggregates, projections and bus consumers read before and after a forget.

mod common;

use common::*;
use orchestrix::runtime::ProjectionRunner;
use orchestrix::store::{ExpectedRevision, Filter};
use orchestrix::{Event as _, EventRecord, Store, StreamId};
use orchestrix_gdpr::{
    Error, ForgetRequest, GdprEvent, MemoryKeyStore, Personal, Vault, gdpr_error,
};
use serde_json::json;

fn memory_gdpr() -> orchestrix_gdpr::Gdpr {
    gdpr(Vault::new(MemoryKeyStore::new()).unwrap())
}

async fn register(app: &orchestrix::Application, id: &str) {
    app.execute(CustomerCommand::Register {
        id: id.to_owned(),
        name: NAME.to_owned(),
        email: EMAIL.to_owned(),
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn stored_bytes_never_hold_the_plaintext() {
    let gdpr = memory_gdpr();
    let app = app(&gdpr);
    let id = customer_id();
    register(&app, &id).await;

    let raw = raw_bytes(app.store()).await;
    assert_eq!(raw.len(), 1);
    assert!(
        !raw[0].contains(EMAIL) && !raw[0].contains(NAME),
        "{}",
        raw[0]
    );
    assert!(!raw[0].contains("ada") && !raw[0].contains("Lovelace"));
    // The rest of the event stays readable, and the tokens name the subject.
    let stored: serde_json::Value = serde_json::from_str(&raw[0]).unwrap();
    assert_eq!(stored["plan"], "basic");
    assert_eq!(stored["customer_id"], id.as_str());
    let email = stored["email"].as_str().unwrap();
    assert!(email.starts_with("orx-pii:v1:") && email.ends_with(&format!(":{id}")));

    // Round trip: aggregate loads see the plaintext.
    let loaded = app.load::<Customer>(&id).await.unwrap();
    assert_eq!(loaded.state.email, Some(Personal::Known(EMAIL.to_owned())));
    assert_eq!(loaded.state.name, Some(Personal::Known(NAME.to_owned())));
}

#[tokio::test]
async fn aggregate_load_after_forget_sees_erased_fields_and_the_rest_intact() {
    let gdpr = memory_gdpr();
    let app = app(&gdpr);
    let id = customer_id();
    let other = customer_id();
    register(&app, &id).await;
    register(&app, &other).await;

    gdpr.forget(
        app.store(),
        ForgetRequest::new(&id)
            .requested_by("dpo")
            .reason("Art. 17"),
    )
    .await
    .unwrap();

    let loaded = app.load::<Customer>(&id).await.unwrap();
    assert_eq!(loaded.state.email, Some(Personal::Erased));
    assert_eq!(loaded.state.name, Some(Personal::Erased));
    assert_eq!(loaded.state.plan, "basic");
    // Commands on the forgotten customer keep working.
    app.execute(CustomerCommand::ChangePlan {
        id: id.clone(),
        plan: "gold".into(),
    })
    .await
    .unwrap();
    let loaded = app.load::<Customer>(&id).await.unwrap();
    assert_eq!(loaded.state.plan, "gold");
    assert_eq!(loaded.state.email, Some(Personal::Erased));
    // Nobody else is affected.
    let kept = app.load::<Customer>(&other).await.unwrap();
    assert_eq!(kept.state.email, Some(Personal::Known(EMAIL.to_owned())));
}

#[tokio::test]
async fn a_forgotten_subject_takes_no_new_personal_data() {
    let gdpr = memory_gdpr();
    let app = app(&gdpr);
    let id = customer_id();
    register(&app, &id).await;
    gdpr.forget(app.store(), ForgetRequest::new(&id))
        .await
        .unwrap();

    let err = app
        .execute(CustomerCommand::Register {
            id: id.clone(),
            name: NAME.into(),
            email: EMAIL.into(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(gdpr_error(&err), Some(Error::Forgotten { subject }) if *subject == id),
        "{err}"
    );
    assert!(!err.is_transient());
    for raw in raw_bytes(app.store()).await {
        assert!(!raw.contains(EMAIL));
    }
}

#[tokio::test]
async fn projection_rebuild_after_forget_sees_erased_values() {
    let gdpr = memory_gdpr();
    let app = app(&gdpr);
    let (id, other) = (customer_id(), customer_id());
    register(&app, &id).await;
    register(&app, &other).await;

    let directory = Directory::new(app.store().clone());
    let runner = ProjectionRunner::builder(app.store().clone(), directory.clone())
        .start()
        .await
        .unwrap();
    runner.catch_up().await.unwrap();
    assert_eq!(
        directory.email(&id),
        Some(Personal::Known(EMAIL.to_owned()))
    );

    gdpr.forget(app.store(), ForgetRequest::new(&id))
        .await
        .unwrap();
    runner.rebuild().await.unwrap();
    assert_eq!(directory.email(&id), Some(Personal::Erased));
    assert_eq!(
        directory.email(&other),
        Some(Personal::Known(EMAIL.to_owned()))
    );
    assert_eq!(
        runner.lag().await.unwrap().events,
        0,
        "nothing dead-lettered or stuck"
    );
    assert!(
        app.store()
            .backend()
            .dead_letters
            .list_dead_letters(None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    runner.shutdown().await.unwrap();
}

#[tokio::test]
async fn forget_appends_the_audit_event() {
    let gdpr = memory_gdpr();
    let app = app(&gdpr);
    let id = customer_id();
    register(&app, &id).await;

    let done = gdpr
        .forget(
            app.store(),
            ForgetRequest::new(&id)
                .requested_by("dpo@acme.example")
                .reason("GDPR Art. 17 request #42"),
        )
        .await
        .unwrap();
    assert_eq!(done.stream.as_str(), format!("gdpr-{id}"));

    let events = app
        .store()
        .read_stream_forward(&done.stream, 0, 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type(), "orchestrix.gdpr.SubjectForgotten");
    assert_eq!(events[0].position, done.position);
    let GdprEvent::SubjectForgotten {
        subject,
        requested_by,
        reason,
        key_destroyed,
        ..
    } = app.store().decode::<GdprEvent>(&events[0]).unwrap();
    assert_eq!(subject, id);
    assert_eq!(requested_by, "dpo@acme.example");
    assert_eq!(reason, "GDPR Art. 17 request #42");
    assert!(key_destroyed);
    assert_eq!(done.event.event_type(), "orchestrix.gdpr.SubjectForgotten");

    // Again: idempotent, and the second request is on the record too.
    let again = gdpr
        .forget(app.store(), ForgetRequest::new(&id))
        .await
        .unwrap();
    let GdprEvent::SubjectForgotten { key_destroyed, .. } = again.event;
    assert!(!key_destroyed);
    assert_eq!(
        app.store()
            .read_stream_forward(&done.stream, 0, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    let forgotten = gdpr.vault().forgotten().await.unwrap();
    assert_eq!(forgotten.len(), 1);
    assert_eq!(forgotten[0].subject, id);
    assert!(gdpr.vault().is_forgotten(&id).await.unwrap());
}

#[tokio::test]
async fn a_subject_id_unfit_for_a_stream_is_refused_before_anything_is_destroyed() {
    let gdpr = memory_gdpr();
    let err = gdpr
        .forget(&Store::memory(), ForgetRequest::new("a b"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Store(_)), "{err}");
    assert!(!gdpr.vault().is_forgotten("a b").await.unwrap());
}

/// Writes one event through `store`'s codec, as the executor does.
async fn append_through_codec(store: &Store, id: &str, payload: serde_json::Value) -> StreamId {
    let data = store.codec().encode(REGISTERED, 1, &payload).unwrap();
    let mut record = EventRecord::json(REGISTERED, 1, &payload);
    record.data = data;
    let stream = StreamId::parse(format!("customer-{id}")).unwrap();
    store
        .append(&stream, ExpectedRevision::Any, vec![record])
        .await
        .unwrap();
    stream
}

#[tokio::test]
async fn tampered_ciphertext_and_unknown_keys_are_typed_errors_not_erasure() {
    let gdpr = memory_gdpr();
    let codec = gdpr.codec();
    let id = customer_id();
    let payload = json!({"customer_id": id, "name": NAME, "email": EMAIL, "plan": "basic"});
    let bytes = codec.encode(REGISTERED, 1, &payload).unwrap();
    let mut stored: serde_json::Value = serde_json::from_slice(&bytes).unwrap();

    // One flipped bit in the ciphertext: Tampered, permanent.
    let token = stored["email"].as_str().unwrap().to_owned();
    let parts: Vec<&str> = token.splitn(5, ':').collect();
    let mut ct = parts[3].as_bytes().to_vec();
    ct[0] = if ct[0] == b'A' { b'B' } else { b'A' };
    let tampered = format!(
        "{}:{}:{}:{}:{}",
        parts[0],
        parts[1],
        parts[2],
        String::from_utf8(ct).unwrap(),
        parts[4]
    );
    stored["email"] = json!(tampered);
    let err = codec
        .decode(REGISTERED, 1, &serde_json::to_vec(&stored).unwrap())
        .unwrap_err();
    assert!(
        matches!(gdpr_error(&err), Some(Error::Tampered { path, .. }) if path == "/email"),
        "{err}"
    );
    assert!(!err.is_transient());

    // A ciphertext moved to another field: Tampered too (the path is bound).
    let mut swapped: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    swapped["name"] = swapped["email"].clone();
    let err = codec
        .decode(REGISTERED, 1, &serde_json::to_vec(&swapped).unwrap())
        .unwrap_err();
    assert!(
        matches!(gdpr_error(&err), Some(Error::Tampered { .. })),
        "{err}"
    );

    // A key store that never saw the subject (the wrong key store): UnknownKey.
    let elsewhere = memory_gdpr();
    let err = elsewhere.codec().decode(REGISTERED, 1, &bytes).unwrap_err();
    assert!(
        matches!(gdpr_error(&err), Some(Error::UnknownKey { subject }) if *subject == id),
        "{err}"
    );

    // A key store with another key for the subject: Tampered.
    elsewhere.codec().encode(REGISTERED, 1, &payload).unwrap();
    let err = elsewhere.codec().decode(REGISTERED, 1, &bytes).unwrap_err();
    assert!(
        matches!(gdpr_error(&err), Some(Error::Tampered { .. })),
        "{err}"
    );

    // A malformed token: Malformed.
    let mut broken: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    broken["email"] = json!("orx-pii:v1:nonsense");
    let err = codec
        .decode(REGISTERED, 1, &serde_json::to_vec(&broken).unwrap())
        .unwrap_err();
    assert!(
        matches!(gdpr_error(&err), Some(Error::Malformed { .. })),
        "{err}"
    );

    // Only a forget erases.
    gdpr.vault().forget(&id).await.unwrap();
    let erased = codec.decode(REGISTERED, 1, &bytes).unwrap();
    assert_eq!(erased["email"], json!({"$erased": true}));
    assert_eq!(erased["plan"], "basic");
}

#[tokio::test]
async fn plain_json_decoding_reports_still_encrypted_instead_of_showing_ciphertext() {
    let gdpr = memory_gdpr();
    let app = app(&gdpr);
    let id = customer_id();
    register(&app, &id).await;
    let events = app.store().read_all(0, 10, &Filter::all()).await.unwrap();
    let err = events[0].decode::<CustomerEvent>().unwrap_err();
    assert!(err.to_string().contains("still encrypted"), "{err}");
    assert!(app.store().decode::<CustomerEvent>(&events[0]).is_ok());
}

#[tokio::test]
async fn upcasting_through_the_codec_keeps_fields_encrypted_and_erased() {
    let gdpr = memory_gdpr();
    let upcasters = orchestrix::Upcasters::new().add(REGISTERED, 1, |mut v| {
        v["plan"] = json!(format!("{}-v2", v["plan"].as_str().unwrap_or_default()));
        Ok(v)
    });
    let store = Store::memory()
        .with_codec(gdpr.codec())
        .with_upcasters(upcasters);
    let id = customer_id();
    let stream = append_through_codec(
        &store,
        &id,
        json!({"customer_id": id, "name": NAME, "email": EMAIL, "plan": "basic"}),
    )
    .await;

    let read = store.read_stream_forward(&stream, 0, 10).await.unwrap();
    let upcast = String::from_utf8_lossy(&read[0].record.data).into_owned();
    assert!(
        !upcast.contains(EMAIL) && upcast.contains("basic-v2"),
        "{upcast}"
    );
    let CustomerEvent::CustomerRegistered { email, plan, .. } =
        store.decode::<CustomerEvent>(&read[0]).unwrap()
    else {
        panic!("wrong event");
    };
    assert_eq!(
        (email, plan.as_str()),
        (Personal::Known(EMAIL.into()), "basic-v2")
    );

    gdpr.forget(&store, ForgetRequest::new(&id)).await.unwrap();
    let read = store.read_stream_forward(&stream, 0, 10).await.unwrap();
    let CustomerEvent::CustomerRegistered { email, name, .. } =
        store.decode::<CustomerEvent>(&read[0]).unwrap()
    else {
        panic!("wrong event");
    };
    assert_eq!((email, name), (Personal::Erased, Personal::Erased));
}
