"""Drives the testkit's EWS server with exchangelib, an independent EWS client, so the
server is checked against a client written for real Exchange, not only against our own
expectations. Run by ews_exchangelib.rs, which starts the server, seeds it, and checks
what this script prints and what the server holds afterwards.

Settings come from the environment (never the command line, so the password stays out
of process listings): EWS_URL, EWS_EMAIL, EWS_LOGIN, EWS_PASSWORD, EWS_AUTH (NTLM or
BASIC), EWS_AUTODISCOVER_URL, and REQUESTS_CA_BUNDLE for HTTPS.

Every finding is printed as one line `RESULT <json>`.
"""

import hashlib
import json
import os
import sys

from exchangelib import (
    BASIC,
    DELEGATE,
    IMPERSONATION,
    NTLM,
    Account,
    Build,
    Configuration,
    Credentials,
    ExtendedProperty,
    Folder,
    Message,
    Version,
)
from exchangelib.autodiscover import autodiscover_cache
from exchangelib.autodiscover.protocol import AutodiscoverProtocol


class MigrationSourceId(ExtendedProperty):
    """A named property in a private property set, as a migration tool would use to
    remember where a message came from."""

    property_set_id = "7b6a9f4e-3c1d-4e8b-9a2f-6d5c4b3a2910"
    property_name = "MailmoveSourceId"
    property_type = "String"


class MessageFlags(ExtendedProperty):
    """PR_MESSAGE_FLAGS, settable only when the item is created."""

    property_tag = 0x0E07
    property_type = "Integer"


def emit(kind, **fields):
    print("RESULT " + json.dumps({"kind": kind, **fields}, sort_keys=True), flush=True)


def folder_path(folder, top):
    names = []
    here = folder
    while here is not None and here.id != top.id:
        names.append(here.name)
        here = here.parent
    return list(reversed(names))


def main():
    url = os.environ["EWS_URL"]
    email = os.environ["EWS_EMAIL"]
    login = os.environ["EWS_LOGIN"]
    password = os.environ["EWS_PASSWORD"]
    auth_type = {"NTLM": NTLM, "BASIC": BASIC}[os.environ["EWS_AUTH"]]

    credentials = Credentials(login, password)
    config = Configuration(
        service_endpoint=url,
        credentials=credentials,
        auth_type=auth_type,
        version=Version(build=Build(15, 1)),
    )
    account = Account(
        primary_smtp_address=email,
        config=config,
        autodiscover=False,
        access_type=DELEGATE,
    )
    Message.register("migration_source_id", MigrationSourceId)
    Message.register("message_flags", MessageFlags)

    # 1. The folder tree: everything below the root, with classes.
    top = account.msg_folder_root
    for folder in account.root.walk():
        emit(
            "folder",
            name=folder.name,
            folder_class=folder.folder_class,
            path=folder_path(folder, top),
            under_msg_folder_root=folder.id != top.id and top.id in ancestor_ids(folder),
            total=folder.total_count,
        )

    # 2. Every message in the inbox, byte for byte.
    for item in account.inbox.all().only("mime_content", "subject", "is_read"):
        emit(
            "inbox",
            subject=item.subject,
            is_read=item.is_read,
            sha256=hashlib.sha256(item.mime_content).hexdigest(),
            size=len(item.mime_content),
        )

    # 3. A new folder and two messages saved into it from MIME, the second one with
    #    PR_MESSAGE_FLAGS = read (so not a draft), both tagged with their source id.
    imported = Folder(parent=account.inbox, name="Imported")
    imported.save()
    emit("created_folder", name=imported.name, id=imported.id)
    for n in (1, 2):
        mime = (
            f"From: Carol <carol@example.com>\r\nTo: {email}\r\n"
            f"Subject: Imported {n}\r\nMessage-ID: <imported-{n}@example.com>\r\n"
            f"Date: Tue, 2 Jan 2024 09:00:0{n} +0000\r\n\r\nImported body {n}.\r\n"
        ).encode()
        fields = dict(
            account=account,
            folder=imported,
            mime_content=mime,
            is_read=True,
            migration_source_id=f"source-{n}",
        )
        if n == 2:
            fields["message_flags"] = 1
        message = Message(**fields)
        message.save()
        emit("created_message", n=n, id=message.id, sha256=hashlib.sha256(mime).hexdigest())

    # 4. The extended properties read back, and used in a restriction.
    for item in imported.all().only("subject", "migration_source_id", "message_flags", "is_read"):
        emit(
            "imported",
            subject=item.subject,
            source_id=item.migration_source_id,
            message_flags=item.message_flags,
            is_read=item.is_read,
        )
    matches = [m.subject for m in imported.filter(migration_source_id="source-2").only("subject")]
    emit("restricted", subjects=matches)

    # 5. Autodiscover. exchangelib only finds an autodiscover service through DNS and
    #    https://<domain>/ or https://autodiscover.<domain>/ on port 443, which a test
    #    cannot serve. Its cache of (domain, credentials) -> autodiscover endpoint is the
    #    documented way to skip that search, so the SOAP GetUserSettings call itself runs
    #    against this server.
    autodiscover_url = os.environ.get("EWS_AUTODISCOVER_URL")
    if autodiscover_url:
        ad_protocol = AutodiscoverProtocol(
            config=Configuration(
                service_endpoint=autodiscover_url,
                credentials=credentials,
                auth_type=auth_type,
            )
        )
        with autodiscover_cache:
            autodiscover_cache[(email.split("@")[1], credentials)] = ad_protocol
        discovered = Account(
            primary_smtp_address=email,
            credentials=credentials,
            autodiscover=True,
            access_type=DELEGATE,
        )
        emit(
            "autodiscover",
            ews_url=discovered.protocol.service_endpoint,
            api_version=discovered.version.api_version,
            inbox_total=discovered.inbox.total_count,
        )

    # 5. Impersonation: an administrator with the ApplicationImpersonation role acts
    # for the mailbox; one without it is refused.
    for kind, admin in (("impersonated", "EWS_ADMIN_LOGIN"), ("not_impersonated", "EWS_OTHER_LOGIN")):
        acting = Account(
            primary_smtp_address=email,
            config=Configuration(
                service_endpoint=url,
                credentials=Credentials(os.environ[admin], os.environ["EWS_ADMIN_PASSWORD"]),
                auth_type=auth_type,
                version=Version(build=Build(15, 1)),
            ),
            autodiscover=False,
            access_type=IMPERSONATION,
        )
        try:
            emit(kind, inbox_total=acting.inbox.total_count)
        except Exception as error:  # exchangelib raises one class per response code
            emit(kind, error=type(error).__name__)

    emit("done")


def ancestor_ids(folder):
    ids = []
    here = folder.parent
    while here is not None:
        ids.append(here.id)
        here = here.parent
    return ids


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - the Rust test shows whatever went wrong
        import traceback

        traceback.print_exc()
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
