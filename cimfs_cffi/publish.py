"""Where a build's image goes, and what it leaves when it cannot finish.

A build writes its image in a private staging folder beside it (:class:`Staging`): a fork's
parent files are hard-linked in, and when the image is complete its region files and then the
image itself are moved into the directory under the directory's writer lock (the same ``flock``
the C writer takes).  So builds of different images in one directory run at once, a second
build of the same image is refused, and a fork survives its parent being rebuilt meanwhile.
Where there is no ``flock`` (Windows), :func:`build_in_place` writes under a temporary name in
the directory itself, holding the writer lock until the image has its name.

Whatever a killed build left (staging folders, lock files, images under a temporary name,
region files no image uses) is removed by the next build (:func:`remove_dead_builds`) or by
``cimfs gc`` (:func:`gc`).  Renames and removals that belong together run with SIGINT and
SIGTERM held back (:func:`signals_deferred`).
"""
import contextlib
import hashlib
import os
import re
import shutil
import signal
import threading
import time
import uuid
from typing import List, Optional

from .errors import BuildError
from .image import Image
from .paths import upcase
from .reader import read_image_header


def region_sets(cim_path: str) -> List[str]:
    """Region-set GUIDs an image file uses (its own last), or [] for a file that is not one."""
    try:
        return [guid for guid, _ in read_image_header(cim_path)[1]]
    except OSError:
        return []


def _sets_in_use(directory: str) -> set:
    """Region-set GUIDs used by any image file in ``directory``."""
    used = set()
    for name in os.listdir(directory):
        p = os.path.join(directory, name)
        if not name.startswith(("region_", "objectid_")) and os.path.isfile(p):
            used.update(region_sets(p))  # [] for files that are not images
    return used


def _remove_region_set(directory: str, guid: str) -> List[str]:
    removed = []
    for name in os.listdir(directory):
        if name.lower().startswith(("region_" + guid, "objectid_" + guid)):
            try:
                os.unlink(os.path.join(directory, name))
                removed.append(name)
            except OSError:
                pass
    return removed


_PARTIAL = re.compile(r"\..+\.[0-9a-f]{12}\.partial\Z", re.DOTALL)
_REGION_FILE = re.compile(r"(?:region|objectid)_([0-9a-fA-F-]{36})_\d+\Z")


def _remove_stale(directory: str, keep: str = "", orphans: bool = False) -> List[str]:
    """What builds killed outright (SIGKILL, power loss) left, removed; call it holding the
    directory's writer lock, so no build is between its commit and its rename.  Stale are: images
    under a build's temporary name (``.NAME.<hex>.partial``) with the region sets only they use;
    with ``orphans``, also region sets no image in the directory uses.  Returns what went."""
    removed = []
    for name in sorted(os.listdir(directory)):
        if name != keep and _PARTIAL.match(name):
            own = region_sets(os.path.join(directory, name))[-1:]
            try:
                os.unlink(os.path.join(directory, name))
                removed.append(name)
            except OSError:
                continue
            in_use = _sets_in_use(directory)
            for guid in own:
                if guid not in in_use:
                    removed += _remove_region_set(directory, guid)
    if orphans:
        in_use = {g.lower() for g in _sets_in_use(directory)}
        present = {m.group(1).lower() for m in map(_REGION_FILE.match, os.listdir(directory)) if m}
        for guid in sorted(present - in_use):
            removed += _remove_region_set(directory, guid)
    return removed


try:
    import fcntl
except ImportError:  # Windows: builds in one directory take turns (the writer's directory lock)
    fcntl = None  # type: ignore[assignment]  # typeshed types the name as the module; None means "no fcntl"

STAGING_PREFIX = ".cimfs-build."
STAGING_LOCK = ".cimfs-build.lock"


def can_stage(directory: str, fork: bool) -> bool:
    """Whether builds in ``directory`` can use staging folders: flock, and for a fork hard links
    (some file systems have none; builds there take turns in place)."""
    if fcntl is None:
        return False
    if not fork:
        return True
    probe = os.path.join(directory, ".cimfs-prep.%s.link" % uuid.uuid4().hex[:12])
    try:
        with open(probe, "wb"):
            pass
        os.link(probe, probe + "2")
        os.unlink(probe + "2")
        return True
    except OSError:
        return False
    finally:
        try:
            os.unlink(probe)
        except OSError:
            pass


def _try_lock(path: str, create: bool = True) -> Optional[int]:
    """An exclusive flock on ``path``, or None when someone holds it (or it is missing and not
    ``create``)."""
    try:
        fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0) | getattr(os, "O_CLOEXEC", 0), 0o644)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _lock_name_file(path: str, create: bool = True) -> Optional[int]:
    """:func:`_try_lock` on a lock file that its holder removes when done: a lock taken on a file
    already removed (its holder finished between our open and our lock) is retried on the new one.
    A new lock file appears already locked (made under another name, locked, then linked), so no
    cleaner can take a live build's lock for a dead one."""
    if create:
        fresh = "%s.%s.new" % (path, uuid.uuid4().hex[:12])
        fd = _try_lock(fresh)
        if fd is None:
            return None
        try:
            os.link(fresh, path)
            return fd
        except FileExistsError:
            os.close(fd)
        finally:
            os.unlink(fresh)
    while True:
        fd = _try_lock(path, create=False)
        if fd is None:
            return None
        if _still_at(fd, path):
            return fd
        os.close(fd)


def _still_at(fd: int, path: str) -> bool:
    """Whether the file locked through ``fd`` is still the one at ``path``.  Its holder removes it
    when done, then lets go: a lock taken between that open and that removal is on a dead file."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def _unlock_name_file(path: str, fd: int) -> None:
    try:
        os.unlink(path)  # while still holding it: see _lock_name_file
    except OSError:
        pass
    os.close(fd)


@contextlib.contextmanager
def _directory_lock(directory: str):
    """The lock the writer takes on a directory (flock on the directory itself): waits for it."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        os.close(fd)


def remove_dead_builds(directory: str) -> List[str]:
    """What builds that were killed left: their staging folders and image-name lock files (nobody
    holds their locks), and, under the directory's writer lock, images under a temporary name.
    Other builds come and go meanwhile: an entry that vanishes is simply not ours to remove."""
    removed = []
    for name in os.listdir(directory):
        try:
            if _remove_if_dead(directory, name):
                removed.append(name)
        except FileNotFoundError:
            pass
    if any(_PARTIAL.match(n) for n in os.listdir(directory)):
        with _directory_lock(directory):
            removed += _remove_stale(directory)
    return removed


def _remove_if_dead(directory: str, name: str) -> bool:
    path = os.path.join(directory, name)
    if name.startswith(".cimfs-lock.") and not name.endswith(".new"):
        fd = _lock_name_file(path, create=False)  # never create one: that is for builds
        if fd is None:
            return False
        _unlock_name_file(path, fd)
        return True
    if name.startswith(".cimfs-prep."):  # killed while setting up (a moment's window)
        if time.time() - os.stat(path).st_mtime < 3600:
            return False
        shutil.rmtree(path, ignore_errors=True)
        return True
    if not name.startswith(STAGING_PREFIX) or not os.path.isdir(path):
        return False
    lock = os.path.join(path, STAGING_LOCK)
    fd = _try_lock(lock, create=False)
    if fd is not None and not _still_at(fd, lock):  # its build finished while we looked: not dead
        os.close(fd)
        return False
    if fd is None:
        # Alive (a staging folder is locked before it gets this name), unless its lock file is
        # gone too: a build killed while removing its folder; then only age tells.
        if os.path.exists(lock) or time.time() - os.stat(path).st_mtime < 3600:
            return False
    shutil.rmtree(path, ignore_errors=True)
    if fd is not None:
        os.close(fd)
    return True


class Staging:
    """A private folder beside the image where one build writes it, so that builds of different
    images in one directory run at once (the writer holds one directory per image).  A fork's
    parent files are hard-linked in, which also keeps them alive if a sibling build replaces the
    parent meanwhile; :meth:`publish` moves the new image into the directory, under the
    directory's writer lock.  Builds of the same image name take turns: the second is refused."""

    def __init__(self, directory: str, name: str, parent_name: Optional[str]):
        self.directory = directory
        self.name = name
        token = hashlib.sha256(upcase(name).encode("utf-8", "surrogatepass")).hexdigest()[:16]
        self.name_lock_path = os.path.join(directory, ".cimfs-lock." + token)
        self.name_lock = _lock_name_file(self.name_lock_path)
        deadline = time.monotonic() + 0.5
        while self.name_lock is None and time.monotonic() < deadline:
            time.sleep(0.01)  # another build's cleanup may hold a dead lock for a moment
            self.name_lock = _lock_name_file(self.name_lock_path)
        if self.name_lock is None:
            raise BuildError("another build of %s is running in %s" % (name, directory),
                             path=os.path.join(directory, name))
        token = uuid.uuid4().hex[:12]
        self.path = os.path.join(directory, ".cimfs-prep." + token)
        self.alive: Optional[int] = None
        self.linked: List[str] = []
        try:
            # Made under another name and locked first, so that it is never seen unlocked.
            os.mkdir(self.path)
            self.alive = _try_lock(os.path.join(self.path, STAGING_LOCK))
            os.rename(self.path, os.path.join(directory, STAGING_PREFIX + token))
            self.path = os.path.join(directory, STAGING_PREFIX + token)
            if parent_name:
                self._link_parent(parent_name)
        except BaseException:
            self.close()
            raise

    def _link_parent(self, parent_name: str) -> None:
        sets = {g.lower() for g in region_sets(os.path.join(self.directory, parent_name))}
        for name in os.listdir(self.directory):
            m = _REGION_FILE.match(name)
            if name == parent_name or (m and m.group(1).lower() in sets):
                os.link(os.path.join(self.directory, name), os.path.join(self.path, name))
                if name != parent_name:
                    self.linked.append(name)

    def publish(self, warnings: List[str]) -> None:
        """The new image's region files, then the image itself, into the directory."""
        staged = os.path.join(self.path, self.name)
        own = region_sets(staged)[-1]
        final = os.path.join(self.directory, self.name)
        with _directory_lock(self.directory) as dir_fd, signals_deferred():
            for name in self.linked:  # a sibling may have replaced the parent and removed these
                if not os.path.exists(os.path.join(self.directory, name)):
                    os.link(os.path.join(self.path, name), os.path.join(self.directory, name))
            for name in os.listdir(self.path):
                m = _REGION_FILE.match(name)
                if m and m.group(1).lower() == own.lower():
                    os.replace(os.path.join(self.path, name), os.path.join(self.directory, name))
            _fsync_directory(dir_fd)  # the regions are in place before the image names them
            old_sets = region_sets(final) if os.path.exists(final) else []
            os.replace(staged, final)
            _fsync_directory(dir_fd)
            _remove_replaced_sets(self.directory, final, old_sets, warnings)

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self.alive is not None:
            os.close(self.alive)
        if self.name_lock is not None:
            _unlock_name_file(self.name_lock_path, self.name_lock)
        self.alive = self.name_lock = None


def _fsync_directory(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse it on directories; the renames are ordered anyway


@contextlib.contextmanager
def signals_deferred():
    """SIGINT and SIGTERM wait (POSIX, main thread) until the block is done, then arrive."""
    deferable = hasattr(signal, "pthread_sigmask") and threading.current_thread() is threading.main_thread()
    if deferable:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        if deferable:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def _remove_replaced_sets(directory: str, image: str, old_sets: List[str], warnings: List[str]) -> None:
    """The replaced image's region files, unless another image still uses them; best effort."""
    try:
        in_use = _sets_in_use(directory)
        for guid in old_sets[-1:]:
            if guid not in in_use:
                _remove_region_set(directory, guid)
    except OSError as e:
        warnings.append("old region files of %s not removed: %s" % (image, e))


def gc(directory) -> List[str]:
    """``cimfs gc DIR``: remove what writers killed outright left in ``directory``: temporary
    files (``.cimfs-tmp.*``; the next writer in the directory removes them too), images under a
    build's temporary name, and region sets that no image uses.  Waits for no one: a directory
    with a writer at work is refused (SharingViolation).  Returns the names removed."""
    directory = os.fspath(directory)
    before = set(os.listdir(directory))
    removed = remove_dead_builds(directory) if fcntl is not None else []
    with Image.create(directory, ".cimfs-gc.%s" % uuid.uuid4().hex[:12], backend="portable"):
        removed += _remove_stale(directory, orphans=True)  # the writer lock is held while this runs
    gone = sorted((before - set(os.listdir(directory))) - set(removed))  # its temporaries, removed on lock
    return sorted(removed + [n for n in gone if n.startswith(".cimfs-tmp.")])


def build_in_place(directory: str, name: str, image: str, options: dict, fill, warnings: List[str]) -> None:
    """Where flock is missing (Windows): the image is written under a temporary name in its own
    directory, holding the directory's writer lock until it has taken its name."""
    temp = ".%s.%s.partial" % (name, uuid.uuid4().hex[:12])
    temp_path = os.path.join(directory, temp)
    committed = replaced = False
    try:
        with Image.create(directory, temp, **options) as img:
            warnings += ["removed %s, left by a build that was killed" % n for n in _remove_stale(directory, keep=temp)]
            fill(img)
            committed = True
            # Still holding the directory's writer lock, so no other build can take the new
            # image for a stale one before it has its name; and with Ctrl-C held back, so the
            # rename and the removal of the old image's region files happen together.
            with signals_deferred():
                old_sets = region_sets(image) if os.path.exists(image) else []
                os.replace(temp_path, image)
                replaced = True
                _remove_replaced_sets(directory, image, old_sets, warnings)
    except BaseException:
        # The flag can lag behind the commit (a signal right after CimCommitImage returned):
        # whether the image exists under its temporary name is what counts.
        if not replaced and (committed or os.path.exists(temp_path)):
            own = region_sets(temp_path)[-1:]
            try:
                os.unlink(temp_path)
            except OSError:
                pass
            in_use = _sets_in_use(directory)  # a reproducible image's set can be another's too
            for guid in own:
                if guid not in in_use:
                    _remove_region_set(directory, guid)
        raise
