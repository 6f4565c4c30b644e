//! The SQS backend: Amazon SQS or any SQS-compatible endpoint, through `aws-sdk-sqs`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use autonoma_aws::aws_sdk_sqs;
use autonoma_aws::aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use autonoma_aws::aws_sdk_sqs::types::{
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};

use crate::{
    Error, MAX_MESSAGE_BYTES, Message, OutgoingMessage, QueueOptions, QueueRef, Receipt, Result,
    dlq_name, message_size,
};

/// SQS's largest batch.
const MAX_BATCH: usize = 10;

#[derive(Clone)]
pub struct SqsBus {
    client: aws_sdk_sqs::Client,
}

impl SqsBus {
    pub fn new(client: aws_sdk_sqs::Client) -> Self {
        SqsBus { client }
    }

    pub(crate) async fn ensure_queue(
        &self,
        name: &str,
        options: &QueueOptions,
    ) -> Result<QueueRef> {
        let mut attributes = HashMap::new();
        attributes.insert(
            QueueAttributeName::VisibilityTimeout,
            crate::whole_seconds(options.visibility_timeout).to_string(),
        );
        if let Some(max_receives) = options.max_receives {
            let dlq_url = self
                .create_or_configure(&dlq_name(name), HashMap::new())
                .await?;
            let arn = self.queue_arn(&dlq_url).await?;
            attributes.insert(
                QueueAttributeName::RedrivePolicy,
                serde_json::json!({ "deadLetterTargetArn": arn, "maxReceiveCount": max_receives })
                    .to_string(),
            );
        }
        let url = self.create_or_configure(name, attributes).await?;
        Ok(QueueRef {
            name: name.to_owned(),
            locator: url,
        })
    }

    /// CreateQueue refuses an existing queue whose attributes differ; that queue is then
    /// given these attributes instead.
    async fn create_or_configure(
        &self,
        name: &str,
        attributes: HashMap<QueueAttributeName, String>,
    ) -> Result<String> {
        let created = self
            .client
            .create_queue()
            .queue_name(name)
            .set_attributes(Some(attributes.clone()).filter(|a| !a.is_empty()))
            .send()
            .await;
        match created {
            Ok(output) => output.queue_url.ok_or_else(|| Error::Sqs {
                operation: "CreateQueue",
                message: "the answer has no queue URL".into(),
            }),
            Err(err) if matches!(err.code(), Some("QueueNameExists" | "QueueAlreadyExists")) => {
                let url = self.queue_url(name).await?;
                if !attributes.is_empty() {
                    self.client
                        .set_queue_attributes()
                        .queue_url(&url)
                        .set_attributes(Some(attributes))
                        .send()
                        .await
                        .map_err(|err| sqs_error("SetQueueAttributes", err))?;
                }
                Ok(url)
            }
            Err(err) => Err(sqs_error("CreateQueue", err)),
        }
    }

    async fn queue_url(&self, name: &str) -> Result<String> {
        let output = self
            .client
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(|err| {
                if is_missing_queue(&err) {
                    Error::QueueNotFound(name.to_owned())
                } else {
                    sqs_error("GetQueueUrl", err)
                }
            })?;
        output.queue_url.ok_or_else(|| Error::Sqs {
            operation: "GetQueueUrl",
            message: "the answer has no queue URL".into(),
        })
    }

    async fn queue_arn(&self, url: &str) -> Result<String> {
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|err| sqs_error("GetQueueAttributes", err))?;
        output
            .attributes
            .and_then(|mut attributes| attributes.remove(&QueueAttributeName::QueueArn))
            .ok_or_else(|| Error::Sqs {
                operation: "GetQueueAttributes",
                message: format!("no QueueArn for {url}"),
            })
    }

    pub(crate) async fn open_queue(&self, name: &str) -> Result<QueueRef> {
        Ok(QueueRef {
            name: name.to_owned(),
            locator: self.queue_url(name).await?,
        })
    }

    pub(crate) async fn send(
        &self,
        queue: &QueueRef,
        body: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<String> {
        let output = self
            .client
            .send_message()
            .queue_url(&queue.locator)
            .message_body(body)
            .set_message_attributes(message_attributes(attributes, "SendMessage")?)
            .send()
            .await
            .map_err(|err| queue_error(queue, "SendMessage", err))?;
        output.message_id.ok_or_else(|| Error::Sqs {
            operation: "SendMessage",
            message: "the answer has no message id".into(),
        })
    }

    pub(crate) async fn send_batch(
        &self,
        queue: &QueueRef,
        entries: &[OutgoingMessage],
    ) -> Result<Vec<String>> {
        let mut ids = Vec::with_capacity(entries.len());
        for chunk in chunks(entries) {
            let requests = chunk
                .iter()
                .enumerate()
                .map(|(index, entry)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(index.to_string())
                        .message_body(&entry.body)
                        .set_message_attributes(message_attributes(
                            &entry.attributes,
                            "SendMessageBatch",
                        )?)
                        .build()
                        .map_err(|err| Error::Sqs {
                            operation: "SendMessageBatch",
                            message: err.to_string(),
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            let output = self
                .client
                .send_message_batch()
                .queue_url(&queue.locator)
                .set_entries(Some(requests))
                .send()
                .await
                .map_err(|err| queue_error(queue, "SendMessageBatch", err))?;
            if let Some(failed) = output.failed.first() {
                return Err(Error::Sqs {
                    operation: "SendMessageBatch",
                    message: format!(
                        "{} of {} entries failed, e.g. {}: {}",
                        output.failed.len(),
                        chunk.len(),
                        failed.code,
                        failed.message.as_deref().unwrap_or_default()
                    ),
                });
            }
            let mut sent: HashMap<String, String> = output
                .successful
                .into_iter()
                .map(|entry| (entry.id, entry.message_id))
                .collect();
            for index in 0..chunk.len() {
                ids.push(sent.remove(&index.to_string()).ok_or_else(|| Error::Sqs {
                    operation: "SendMessageBatch",
                    message: format!("entry {index} is missing from the answer"),
                })?);
            }
        }
        Ok(ids)
    }

    pub(crate) async fn receive(
        &self,
        queue: &QueueRef,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Message>> {
        let output = self
            .client
            .receive_message()
            .queue_url(&queue.locator)
            .max_number_of_messages(i32::try_from(max).unwrap_or(10))
            .wait_time_seconds(i32::try_from(wait.as_secs()).unwrap_or(20))
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|err| queue_error(queue, "ReceiveMessage", err))?;
        let mut messages = Vec::new();
        for message in output.messages.unwrap_or_default() {
            let Some(receipt) = message.receipt_handle else {
                tracing::warn!(queue = %queue.name, "SQS returned a message without a receipt handle; skipping it");
                continue;
            };
            let receive_count = message
                .attributes
                .as_ref()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|count| count.parse().ok())
                .unwrap_or(1);
            let attributes = message
                .message_attributes
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(name, value)| Some((name, value.string_value?)))
                .collect();
            messages.push(Message {
                id: message.message_id.unwrap_or_default(),
                body: message.body.unwrap_or_default(),
                attributes,
                receive_count,
                receipt: Receipt(receipt),
            });
        }
        Ok(messages)
    }

    pub(crate) async fn delete(&self, queue: &QueueRef, receipt: &Receipt) -> Result<()> {
        let deleted = self
            .client
            .delete_message()
            .queue_url(&queue.locator)
            .receipt_handle(&receipt.0)
            .send()
            .await;
        match deleted {
            Ok(_) => Ok(()),
            // Some SQS-compatible servers refuse the handle of a message already deleted;
            // Amazon accepts it, and so does this bus.
            Err(err) if err.code() == Some("ReceiptHandleIsInvalid") => Ok(()),
            Err(err) => Err(queue_error(queue, "DeleteMessage", err)),
        }
    }

    pub(crate) async fn change_visibility(
        &self,
        queue: &QueueRef,
        receipt: &Receipt,
        seconds: u64,
    ) -> Result<()> {
        let changed = self
            .client
            .change_message_visibility()
            .queue_url(&queue.locator)
            .receipt_handle(&receipt.0)
            .visibility_timeout(i32::try_from(seconds).unwrap_or(i32::MAX))
            .send()
            .await;
        match changed {
            Ok(_) => Ok(()),
            Err(err) if is_stale_receipt(&err) => Err(Error::StaleReceipt),
            Err(err) => Err(queue_error(queue, "ChangeMessageVisibility", err)),
        }
    }
}

/// Requests of at most ten entries and at most [`MAX_MESSAGE_BYTES`] in all (SQS's limits).
fn chunks(entries: &[OutgoingMessage]) -> Vec<&[OutgoingMessage]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (index, entry) in entries.iter().enumerate() {
        let size = message_size(&entry.body, &entry.attributes);
        if index > start && (index - start == MAX_BATCH || bytes + size > MAX_MESSAGE_BYTES) {
            out.push(&entries[start..index]);
            start = index;
            bytes = 0;
        }
        bytes += size;
    }
    if start < entries.len() {
        out.push(&entries[start..]);
    }
    out
}

fn message_attributes(
    attributes: &BTreeMap<String, String>,
    operation: &'static str,
) -> Result<Option<HashMap<String, MessageAttributeValue>>> {
    if attributes.is_empty() {
        return Ok(None);
    }
    attributes
        .iter()
        .map(|(name, value)| {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|err| Error::Sqs {
                    operation,
                    message: err.to_string(),
                })?;
            Ok((name.clone(), value))
        })
        .collect::<Result<HashMap<_, _>>>()
        .map(Some)
}

fn is_missing_queue<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    matches!(
        err.code(),
        Some("QueueDoesNotExist" | "AWS.SimpleQueueService.NonExistentQueue")
    )
}

/// Amazon answers a handle whose delivery is over with InvalidParameterValue ("the receipt
/// handle has expired"); others with ReceiptHandleIsInvalid or MessageNotInflight.
fn is_stale_receipt<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    match err.code() {
        Some("ReceiptHandleIsInvalid" | "MessageNotInflight") => true,
        Some("InvalidParameterValue") => err
            .message()
            .is_some_and(|m| m.to_ascii_lowercase().contains("receipt handle")),
        _ => false,
    }
}

fn queue_error<E, R>(queue: &QueueRef, operation: &'static str, err: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    if is_missing_queue(&err) {
        Error::QueueNotFound(queue.name.clone())
    } else {
        sqs_error(operation, err)
    }
}

fn sqs_error<E, R>(operation: &'static str, err: SdkError<E, R>) -> Error
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    Error::Sqs {
        operation,
        message: DisplayErrorContext(&err).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_split_by_count_and_size() {
        let small: Vec<_> = (0..25)
            .map(|i| OutgoingMessage::new(i.to_string()))
            .collect();
        let sizes: Vec<usize> = chunks(&small).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [10, 10, 5]);

        let big: Vec<_> = (0..3)
            .map(|_| OutgoingMessage::new("x".repeat(100 * 1024)))
            .collect();
        let sizes: Vec<usize> = chunks(&big).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [2, 1]);
        assert!(chunks(&[]).is_empty());
    }
}
