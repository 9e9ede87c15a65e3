"""Where a study is stored: the storage's URL, its side folders, the locks its processes share, its trials read as
rows, opening it. One module a job:

    urls.py            which URL, which are refused, masking its password, the driver's options
    folders.py         the side-folder layout: locks, checkpoints, kept weights, logs
    locks.py           the study's and the storage's locks, shared by every process of the storage
    rows.py            a study's trials read as plain rows (Optuna's RDB storage, a faster read)
    optuna_private.py  every private name of Optuna that hpsearch uses, and nothing else does; the trial cache
    opening.py         opening a storage (one cache a process), and a database error as one line

What happens to a lost or failed trial is the search's policy, not the storage's: search/retries.py.
"""

from hpsearch.storage.folders import (
    checkpoint_root,
    folder_beside,
    side_folder,
    trial_checkpoint,
    writable_checkpoint_root,
)
from hpsearch.storage.locks import (
    LOCK_BRIEF_S,
    STOPPING_LOCK_WAIT_S,
    FileLock,
    LockWaitExpired,
    NoLock,
    advisory_key,
    shared_lock,
)
from hpsearch.storage.opening import (
    cached,
    check_sqlite_folder,
    open_existing,
    open_storage,
    quiet_experimental,
    storage_failure,
)
from hpsearch.storage.urls import (
    CONNECT_TIMEOUT_S,
    driver_url,
    engine_options,
    is_new_sqlite,
    mask,
    scrub,
    secrets,
    sqlite_file,
    storage_url,
)

__all__ = [
    "CONNECT_TIMEOUT_S", "LOCK_BRIEF_S", "STOPPING_LOCK_WAIT_S", "FileLock", "LockWaitExpired", "NoLock", "advisory_key", "cached",
    "check_sqlite_folder", "checkpoint_root", "driver_url", "engine_options", "folder_beside", "is_new_sqlite",
    "mask", "open_existing", "open_storage", "quiet_experimental", "scrub", "secrets", "shared_lock", "side_folder",
    "sqlite_file", "storage_failure", "storage_url", "trial_checkpoint", "writable_checkpoint_root",
]
