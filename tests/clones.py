"""Many datasets fast: copies of one dtool dataset under new UUIDs, with boto3.

Copying hundreds of datasets with dtool takes minutes; these clones take
one PUT per object. Each clone is a complete frozen dataset in dtool-s3's
layout (registration key, admin metadata with the new UUID in its body and
in the object's user metadata, README, manifest, items, tags, annotations),
so dtool, dservercore and the plugin read it like any other.
"""
import json
import uuid as uuidlib

from tests.services import list_keys


def clone_dataset(s3, bucket, source_uri, count):
    """``count`` copies of the dataset at ``source_uri``; returns their URIs."""
    source = source_uri.rsplit("/", 1)[1]
    prefix = s3.get_object(Bucket=bucket, Key=f"dtool-{source}")["Body"].read().decode()
    root = f"{prefix}{source}/"
    objects = []
    for key in list_keys(s3, bucket, root):
        answer = s3.get_object(Bucket=bucket, Key=key)
        objects.append((key[len(root):], answer["Body"].read(), answer.get("Metadata", {})))
    uris = []
    for _ in range(count):
        new = str(uuidlib.uuid4())
        s3.put_object(Bucket=bucket, Key=f"dtool-{new}", Body=prefix.encode())
        for relative, body, metadata in sorted(objects, key=lambda o: o[0] == "dtool"):
            if relative == "dtool":  # last, as dtool-s3 freezes
                admin = json.loads(body)
                admin["uuid"] = new
                body = json.dumps(admin).encode()
                metadata = dict(metadata, uuid=new)
            s3.put_object(Bucket=bucket, Key=f"{prefix}{new}/{relative}", Body=body,
                          Metadata=metadata)
        uris.append(f"s3://{bucket}/{new}")
    return uris
