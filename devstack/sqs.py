"""SQS queues on moto_server, notified by buckets as AWS would do it.

moto_server serves SQS on the port of S3 and delivers bucket notifications
to queues itself: ``QueueConfigurations`` for S3 -> SQS, an SNS topic with
an ``sqs`` subscription for S3 -> SNS -> SQS (raw message delivery on or
off; the first message of either is an ``s3:TestEvent``), and an
EventBridge rule with the queue as target for S3 -> EventBridge -> SQS.
"""
import json
import uuid
from dataclasses import dataclass

from devstack.moto import MOTO_KEY, MOTO_SECRET
from devstack.s3 import DUMMY_REGION

EVENTS = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]


@dataclass
class Queue:
    """One queue and its dead-letter queue, with the client that made them."""
    sqs: object  # boto3 SQS client
    url: str
    arn: str
    dead_letter_url: str

    def depth(self, url=None):
        """(visible, in flight) messages of the queue, or of ``url``."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url or self.url, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return (int(attributes["ApproximateNumberOfMessages"]),
                int(attributes["ApproximateNumberOfMessagesNotVisible"]))

    def dead_letters(self):
        """Bodies in the dead-letter queue (read without deleting them)."""
        answer = self.sqs.receive_message(QueueUrl=self.dead_letter_url,
                                          MaxNumberOfMessages=10, VisibilityTimeout=0)
        return [m["Body"] for m in answer.get("Messages", [])]

    def send(self, body):
        return self.sqs.send_message(QueueUrl=self.url, MessageBody=body)["MessageId"]


def queue_arn(sqs, url):
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]


def create_queue(moto, visibility_timeout=30, max_receive_count=5, name=None):
    """A queue whose messages go to a dead-letter queue after
    ``max_receive_count`` receives (the redrive policy of the README)."""
    sqs = moto.boto3_client("sqs")
    name = name or f"dserver-{uuid.uuid4().hex[:10]}"
    dead_letter_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    redrive = {"deadLetterTargetArn": queue_arn(sqs, dead_letter_url),
               "maxReceiveCount": str(max_receive_count)}
    url = sqs.create_queue(QueueName=name, Attributes={
        "VisibilityTimeout": str(visibility_timeout),
        "RedrivePolicy": json.dumps(redrive)})["QueueUrl"]
    return Queue(sqs=sqs, url=url, arn=queue_arn(sqs, url), dead_letter_url=dead_letter_url)


def notify_queue(moto, bucket, queue):
    """S3 -> SQS: the bucket sends its object events to the queue."""
    moto.boto3_client("s3").put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [
            {"QueueArn": queue.arn, "Events": EVENTS}]})


def notify_queue_through_sns(moto, bucket, queue, raw_delivery):
    """S3 -> SNS -> SQS, with ``RawMessageDelivery`` on or off."""
    sns = moto.boto3_client("sns")
    topic_arn = sns.create_topic(Name=f"{bucket}-events")["TopicArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue.arn,
                  Attributes={"RawMessageDelivery": "true" if raw_delivery else "false"})
    moto.boto3_client("s3").put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"TopicConfigurations": [
            {"TopicArn": topic_arn, "Events": EVENTS}]})
    return topic_arn


def notify_queue_through_eventbridge(moto, bucket, queue):
    """S3 -> EventBridge (the default bus) -> a rule whose target is the queue."""
    moto.boto3_client("s3").put_bucket_notification_configuration(
        Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})
    events = moto.boto3_client("events")
    rule = f"dserver-{bucket}"
    events.put_rule(Name=rule, EventPattern=json.dumps({
        "source": ["aws.s3"], "detail-type": ["Object Created", "Object Deleted"],
        "detail": {"bucket": {"name": [bucket]}}}))
    events.put_targets(Rule=rule, Targets=[{"Id": "dserver", "Arn": queue.arn}])


def consumer_env(moto, *queues):
    """What a dserver needs to consume the queues from moto with boto3's
    standard configuration: endpoint, credentials and region in the environment."""
    return {"DSERVER_NOTIFY_SQS_QUEUE_URLS": ",".join(q.url for q in queues),
            "AWS_ENDPOINT_URL_SQS": moto.endpoint,
            "AWS_ACCESS_KEY_ID": MOTO_KEY, "AWS_SECRET_ACCESS_KEY": MOTO_SECRET,
            "AWS_DEFAULT_REGION": DUMMY_REGION}
