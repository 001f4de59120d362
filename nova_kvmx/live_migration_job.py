# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""The migration job on the source: started, watched, ended.

libvirt's peer-to-peer migration (``migrateToURI3``) blocks until it ends,
so it runs in a worker thread while the compute manager's thread watches
it, as Nova's libvirt driver does, with Nova's own policy helpers
(``nova.virt.libvirt.migration``) and options (``[libvirt]
live_migration_*``): the allowed downtime grows in steps, progress goes
to the Migration record (``memory_processed``, ``memory_remaining``, ...)
and the instance's ``progress``, an API force-complete switches to
post-copy (when permitted) or pauses the guest, and a job that outlives
its completion timeout is aborted (or forced, by
``live_migration_timeout_action``).

The outcome is decided by where the guest is: gone from the source means
completed (Nova's post method runs); still running here means the
migration failed or was aborted (Nova's recover method runs, the guest
carries on here, and the reason is recorded in the instance's action
where the API user reads it). Anything else is an error for Nova.
"""

import collections
import contextlib
import os
import time
import traceback

import nova.conf
from nova.compute import vm_states
from nova import exception
from nova import objects
from nova import thread_pool_factory
from nova.virt.libvirt import migration as libvirt_migrate
from nova.virt.libvirt import utils as libvirt_utils
from oslo_log import log as logging
from oslo_utils import netutils
from oslo_utils import units

from nova_kvmx import exception as kvmx_exception

try:
    import libvirt
except ImportError:  # pragma: no cover - libvirt-python is a requirement
    libvirt = None

CONF = nova.conf.CONF
LOG = logging.getLogger(__name__)

POLL_INTERVAL = 0.5
# The instance action event that carries the reason of a failed live
# migration whose guest carried on at the source.
FAILURE_EVENT = 'compute_live_migration_failure'
USER_ABORT = 'user'
TIMEOUT_ABORT = 'timeout'


def migration_flags(block_migration, paused):
    """libvirt migration flags from Nova's ``[libvirt]`` options.

    Post-copy, when permitted, replaces auto-converge (Nova's rule) and is
    left out for a paused guest (QEMU refuses it).
    """
    flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER |
             libvirt.VIR_MIGRATE_UNDEFINE_SOURCE |
             libvirt.VIR_MIGRATE_PERSIST_DEST)
    if block_migration:
        flags |= libvirt.VIR_MIGRATE_NON_SHARED_INC
    if CONF.libvirt.live_migration_with_native_tls:
        flags |= libvirt.VIR_MIGRATE_TLS
    if CONF.libvirt.live_migration_permit_post_copy and not paused:
        flags |= libvirt.VIR_MIGRATE_POSTCOPY
    elif CONF.libvirt.live_migration_permit_auto_converge:
        flags |= libvirt.VIR_MIGRATE_AUTO_CONVERGE
    if CONF.libvirt.live_migration_parallel_connections > 1:
        flags |= libvirt.VIR_MIGRATE_PARALLEL
    return flags


def libvirt_uri(dest):
    """The destination libvirtd, from Nova's ``live_migration_scheme``
    (or the deprecated ``live_migration_uri``)."""
    if CONF.libvirt.live_migration_uri:
        return CONF.libvirt.live_migration_uri % dest
    return 'qemu+%s://%s/system' % (CONF.libvirt.live_migration_scheme or
                                    'tcp', netutils.escape_ipv6(dest))


def data_gb(memory_mb, disk_sizes):
    """GiB to transfer as Nova counts it for its downtime steps and
    completion timeout: memory and each copied disk, at least 2 each."""
    return max(2.0, memory_mb / units.Ki) + sum(
        max(2.0, size / units.Gi) for size in disk_sizes)


def report_failure(context, instance, error):
    """Record ``error`` (a NovaException) as a failed event of the
    instance's current action. The guest carried on at the source, so the
    instance stays ACTIVE and Nova shows no fault: the action's events
    (``os-instance-actions``) are where the API user sees why."""
    try:
        objects.InstanceActionEvent.event_start(
            context, instance.uuid, FAILURE_EVENT, want_result=False,
            host=instance.host)
        objects.InstanceActionEvent.event_finish_with_failure(
            context, instance.uuid, FAILURE_EVENT, exc_val=error,
            exc_tb=''.join(traceback.format_exception(error)),
            want_result=False)
    except exception.InstanceActionNotFound:
        LOG.warning('No instance action to record the failure in: %s',
                    error, instance=instance)


class Jobs(object):
    """The live migrations running from this host, by instance UUID."""

    def __init__(self, host):
        self.host = host
        # Nova's run_tasks reads requests ('force-complete') from here.
        self.tasks = {}
        # Why a job is to be aborted: USER_ABORT or TIMEOUT_ABORT.
        self.aborted = {}

    @contextlib.contextmanager
    def tracking(self, instance):
        """Accept force-complete and abort requests for ``instance`` from
        now on (also before the libvirt job exists) until the end."""
        self.tasks[instance.uuid] = collections.deque()
        try:
            yield
        finally:
            self.tasks.pop(instance.uuid, None)
            self.aborted.pop(instance.uuid, None)

    def request(self, instance, task):
        try:
            self.tasks[instance.uuid].append(task)
        except KeyError:
            raise exception.NoActiveMigrationForInstance(
                instance_id=instance.uuid)

    def abort(self, instance):
        """Ask for the job to be aborted; the watch loop aborts it as soon
        as libvirt runs it (a request may come before)."""
        if instance.uuid not in self.tasks:
            raise exception.NoActiveMigrationForInstance(
                instance_id=instance.uuid)
        LOG.info('Abort of the live migration requested', instance=instance)
        self.aborted.setdefault(instance.uuid, USER_ABORT)

    def run(self, context, instance, guest, dest, xml, data, post_method,
            recover_method, disks):
        """Migrate ``guest`` and end with Nova's post or recover method
        (within :meth:`tracking`).

        :param disks: [(target device, path)] to copy (block migration)
        """
        target = data.target_connect_addr \
            if 'target_connect_addr' in data else None
        if not libvirt_utils.is_valid_hostname(target or dest):
            raise exception.InvalidHostname(hostname=target or dest)
        flags = migration_flags(data.block_migration,
                                instance.vm_state == vm_states.PAUSED)
        on_failure = collections.deque()
        error = None
        timeout = 0
        started = time.monotonic()
        if instance.uuid not in self.aborted:
            LOG.info('Live migration to %s starting (%s)', dest,
                     'block migration' if data.block_migration else
                     'no disk to copy', instance=instance)
            future = thread_pool_factory.spawn(
                guest.migrate, libvirt_uri(target or dest),
                migrate_uri=('tcp://%s' % netutils.escape_ipv6(target)
                             if target else None),
                migrate_disks=[dev for dev, _ in disks],
                destination_xml=xml, flags=flags,
                bandwidth=CONF.libvirt.live_migration_bandwidth,
                parallel=CONF.libvirt.live_migration_parallel_connections)
            timeout = self._watch(
                instance, guest, data.migration, future, on_failure, flags,
                data_gb(instance.flavor.memory_mb,
                        [_size(path) for _, path in disks]))
            error = future.exception()
        self._end(context, instance, guest, dest, data, post_method,
                  recover_method, error, self.aborted.get(instance.uuid),
                  on_failure, timeout, started)

    def _watch(self, instance, guest, migration, future, on_failure, flags,
               gigabytes):
        """Drive the job until the migration thread ends; return the
        completion timeout in seconds (0: none)."""
        steps = list(libvirt_migrate.downtime_steps(gigabytes))
        timeout = int(CONF.libvirt.live_migration_completion_timeout *
                      gigabytes)
        postcopy = bool(flags & libvirt.VIR_MIGRATE_POSTCOPY)
        start = time.monotonic()
        downtime = None
        timed_out = abort_sent = False
        last_stats = None
        while not future.done():
            info = guest.get_job_info()
            if info.type == libvirt.VIR_DOMAIN_JOB_UNBOUNDED:
                libvirt_migrate.run_tasks(guest, instance, self.tasks,
                                          on_failure, migration, postcopy)
                elapsed = time.monotonic() - start
                if not timed_out and \
                        libvirt_migrate.should_trigger_timeout_action(
                            instance, elapsed, timeout, migration.status):
                    timed_out = True
                    self._on_timeout(instance)
                if instance.uuid in self.aborted and not abort_sent:
                    abort_sent = self._abort_job(instance, guest)
                downtime = libvirt_migrate.update_downtime(
                    guest, instance, downtime, steps, elapsed)
                if last_stats is None or elapsed - last_stats >= \
                        CONF.libvirt.live_migration_monitor_interval:
                    last_stats = elapsed
                    remaining = 100
                    if info.memory_total:
                        remaining = round(info.memory_remaining * 100 /
                                          info.memory_total)
                    libvirt_migrate.save_stats(instance, migration, info,
                                               remaining)
            time.sleep(POLL_INTERVAL)
        return timeout

    def _on_timeout(self, instance):
        if CONF.libvirt.live_migration_timeout_action == 'force_complete':
            self.tasks[instance.uuid].append('force-complete')
        else:
            self.aborted.setdefault(instance.uuid, TIMEOUT_ABORT)

    @staticmethod
    def _abort_job(instance, guest):
        """Abort the libvirt job; False if libvirt could not (it is tried
        again: a job in post-copy cannot be aborted at all)."""
        try:
            guest.abort_job()
            return True
        except libvirt.libvirtError as ex:
            LOG.warning('Could not abort the migration job: %s', ex,
                        instance=instance)
            return False

    def _end(self, context, instance, guest, dest, data, post_method,
             recover_method, error, aborted, on_failure, timeout, started):
        if error is None:
            job = guest.get_job_info().type
            if job not in (libvirt.VIR_DOMAIN_JOB_COMPLETED,
                           libvirt.VIR_DOMAIN_JOB_FAILED,
                           libvirt.VIR_DOMAIN_JOB_CANCELLED):
                job = libvirt_migrate.find_job_type(guest, instance)
        else:
            LOG.warning('Live migration to %s ended with: %s', dest, error,
                        instance=instance)
            job = libvirt_migrate.find_job_type(guest, instance)
            if job == libvirt.VIR_DOMAIN_JOB_COMPLETED:
                # Not running here any more, yet libvirt failed: Nova must
                # not be told it is here, nor there.
                raise kvmx_exception.LiveMigrationFailed(
                    dest=dest, source=instance.host, reason=error)
        if job == libvirt.VIR_DOMAIN_JOB_COMPLETED:
            LOG.info('Live migration to %s completed in %.1f s', dest,
                     time.monotonic() - started, instance=instance)
            post_method(context, instance, dest, data.block_migration, data)
            return
        libvirt_migrate.run_recover_tasks(self.host, guest, instance,
                                          on_failure)
        if aborted == USER_ABORT:
            LOG.warning('Live migration to %s aborted', dest,
                        instance=instance)
            recover_method(context, instance, dest, data,
                           migration_status='cancelled')
            return
        if aborted == TIMEOUT_ABORT:
            failure = kvmx_exception.LiveMigrationTimedOut(
                dest=dest, source=instance.host, timeout=timeout)
        else:
            failure = kvmx_exception.LiveMigrationFailed(
                dest=dest, source=instance.host,
                reason=error or 'libvirt reported the job failed')
        LOG.error('%s', failure.format_message(), instance=instance)
        recover_method(context, instance, dest, data)
        report_failure(context, instance, failure)

    @staticmethod
    def log_completed(guest, instance):
        """Log (and return) libvirt's statistics of the completed incoming
        migration: total time and the guest's downtime, in ms. They are
        kept for ``virsh domjobinfo --completed``."""
        try:
            stats = guest._domain.jobStats(
                libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED |
                libvirt.VIR_DOMAIN_JOB_STATS_KEEP_COMPLETED)
        except libvirt.libvirtError as ex:
            LOG.debug('No statistics of the migration: %s', ex,
                      instance=instance)
            return {}
        LOG.info('Live migration took %s ms, the guest was paused for %s '
                 'ms; %s MiB of memory transferred',
                 stats.get('time_elapsed'), stats.get('downtime'),
                 stats.get('memory_processed', 0) // units.Mi,
                 instance=instance)
        return stats


def _size(path):
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
