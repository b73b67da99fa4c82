"""Names shared by the schema, the API and the delivery pipeline."""

from typing import Final

# Known channels, in the default fallback order. The database enforces the same list
# (sql/0001_initial.sql, notifyd.known_channels()).
CHANNELS: Final = ("email", "sms", "telegram")
DEFAULT_CHANNELS: Final = CHANNELS

# Channel PostgreSQL NOTIFY wakes the dispatcher on; the payload is constant on purpose.
WAKE_CHANNEL: Final = "notifyd_wakeup"

# Notification statuses. `processing` is the in-flight state of a claimed row.
PENDING: Final = "pending"
PROCESSING: Final = "processing"
SENT: Final = "sent"
FAILED: Final = "failed"

# Attempt statuses.
ATTEMPT_SUCCESS: Final = "success"
ATTEMPT_FAILED: Final = "failed"

# Advisory lock key that serialises migrations across instances ("notifyd" in ASCII).
MIGRATION_LOCK_KEY: Final = 0x6E6F746966796400

# First key of the session advisory lock each running instance holds ("noti" in ASCII); the
# second is derived from the instance id (sql/0002_reliability.sql).
PRESENCE_LOCK_NAMESPACE: Final = 0x6E6F7469

# Longest Idempotency-Key header accepted (the database enforces it too).
MAX_IDEMPOTENCY_KEY_LENGTH: Final = 255

# Limits the API and the database both enforce.
MIN_PRIORITY: Final = -100
MAX_PRIORITY: Final = 100
MAX_SUBJECT_LENGTH: Final = 998
MAX_MESSAGE_LENGTH: Final = 65536
