//! Publishing dead letters on `talon.dlq.<stage>`, shared by every stage.

use async_nats::jetstream::{
    self,
    context::{PublishAckFuture, PublishError, PublishErrorKind},
    message::PublishMessage,
};
use talon_proto::names::dlq_subject;
use talon_proto::DeadLetter;

/// Starts publishing `letter` with `Nats-Msg-Id` = `msg_id` (derived from the
/// input, so a redelivered input is dead-lettered once). The caller awaits
/// the returned ack before acking the input.
pub async fn publish(
    js: &jetstream::Context,
    letter: &DeadLetter,
    msg_id: &str,
) -> Result<PublishAckFuture, jetstream::context::PublishError> {
    // A DeadLetter holds only strings, numbers and maps of strings: it
    // always serializes, and this error is never returned.
    let body = serde_json::to_vec(letter)
        .map_err(|e| PublishError::with_source(PublishErrorKind::Other, e))?;
    js.send_publish(
        dlq_subject(&letter.stage),
        PublishMessage::build()
            .payload(body.into())
            .message_id(msg_id),
    )
    .await
}
