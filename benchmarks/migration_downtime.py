"""Live migration of a real tiny guest: total time and downtime.

Uses the functional tier's two real hosts on this machine
(tests/functional/test_live_migration.py: Nova's in-process API,
conductor, scheduler and Placement; compute1 on this machine's libvirtd,
compute2 on a second libvirtd in its own namespaces, each with its own
instances directory). Each run boots a pinned guest (the tiny direct-kernel
busybox guest under TCG) on compute1, waits for it to be up, live-migrates
it to compute2 through the API (a block migration: libvirt copies the root
disk's overlay and the memory over 127.0.0.0/8) and prints:

- api: from the os-migrateLive request to the migration record reading
  'completed' (polled every 0.1 s): Nova's checks and claims, the
  destination's preparation, libvirt's job and Nova's post-migration work;
- job: libvirt's duration of the migration job (``time_elapsed``);
- downtime: how long the guest was paused at the switch-over, as libvirt
  and QEMU measured it (``downtime``), read on the destination as the
  driver logs it;
- setup, memory, passes: libvirt's setup time, MiB of memory
  transferred (pages never touched by the guest are sent as zero pages,
  not counted) and the passes over dirty memory.

- with --dirty: the guest's peak dirty rate (MiB/s) and auto-converge
  throttle (%) during the job, sampled every 0.1 s, and whether the
  migration switched to post-copy (mode).

An idle tiny guest barely dirties memory and converges in few passes.
``--dirty MiB`` makes the guest rewrite that much memory over and over
(``kvmx.dirty`` on its kernel command line); with a ``--bandwidth`` below
its dirty rate the migration cannot converge by itself, and
``--auto-converge``, ``--post-copy`` with ``--force-after`` and the
downtime steps (``--downtime``, Nova's ``[libvirt]
live_migration_downtime*``) decide how it ends.

What it cannot tell: the downtime is QEMU's figure (last pass and
switch-over); the tiny guest has no network, so a downtime seen by a
network peer (ARP, switch learning) is not measured. Under TCG the
guest's dirty rate is far below a busy KVM guest's.

Run from the repo root, as root, with libvirtd and virtlogd running:
    .venv/bin/python benchmarks/migration_downtime.py [--runs N]
        [--ram MiB] [--small-pages] [--bandwidth MiB/s] [--dirty MiB]
        [--auto-converge] [--post-copy] [--downtime ms] [--force-after s]
"""

import argparse
import os
import statistics
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
# The figures go to this script's output, not to the test's capture.
os.environ['OS_STDOUT_CAPTURE'] = '0'
os.environ['OS_TEST_TIMEOUT'] = '3600'

from oslo_utils import units  # noqa: E402

from tests.functional import guest_image  # noqa: E402
from tests.functional import test_live_migration  # noqa: E402

ARGS = None
POLL = 0.1


class Measure(test_live_migration.TwoHostsTestCase):

    def setUp(self):
        super().setUp()
        self.flags(live_migration_bandwidth=ARGS.bandwidth,
                   live_migration_permit_auto_converge=ARGS.auto_converge,
                   live_migration_permit_post_copy=ARGS.post_copy,
                   live_migration_downtime=ARGS.downtime,
                   live_migration_completion_timeout=ARGS.force_after,
                   live_migration_timeout_action='force_complete',
                   group='libvirt')
        if ARGS.dirty:
            self.image_id = self.busy_image(ARGS.dirty)
        if ARGS.post_copy:
            # See nova-kvmx host-check: allowed for this run.
            self.useFixture(test_live_migration.UnprivilegedUserfaultfd())
        specs = {'hw:cpu_policy': 'dedicated'}
        if not ARGS.small_pages:
            specs['hw:mem_page_size'] = '2MB'
        self.flavor_id = self.create_flavor(
            name='kvmx.bench', vcpus=1, ram=ARGS.ram, extra_specs=specs)

    def busy_image(self, mib):
        """The test guest's image, rewriting ``mib`` MiB over and over."""
        guest = guest_image.get_guest_artifacts()
        image = self.glance.show(self.ctxt, self.image_id)
        return self._upload(
            guest.root_disk, 'qcow2', 'kvmx-busy-guest',
            kernel_id=image['properties']['kernel_id'],
            ramdisk_id=image['properties']['ramdisk_id'],
            os_command_line='%s kvmx.dirty=%d' % (guest.cmdline, mib))

    @staticmethod
    def sample_job(source, peak):
        """Keep the peaks of the running job's dirty rate (pages/s) and
        auto-converge throttle: the completed job's statistics lack
        them."""
        try:
            stats = source.jobStats()
        except test_live_migration.libvirt.libvirtError:
            return  # the domain has left
        for key in peak:
            peak[key] = max(peak[key], stats.get(key, 0))

    def test_measure(self):
        rows = []
        for run in range(ARGS.runs):
            server = self.boot(self.compute_host, name='bench-%d' % run)
            if ARGS.dirty:
                self.wait_for_console(server,
                                      guest_image.DIRTY_MARKER_PREFIX)
            started = time.monotonic()
            self.live_migrate(server)
            source = self.domain(server)
            peak = {'memory_dirty_rate': 0, 'auto_converge_throttle': 0,
                    'memory_page_size': 4096, 'time_elapsed': 0}
            while True:
                self.sample_job(source, peak)
                migration = self.migration(server)
                if migration and migration['status'] in (
                        'completed', 'error', 'failed', 'cancelled'):
                    break
                if time.monotonic() - started > 600:
                    self.fail('migration still %s after 600 s' % (
                        migration and migration['status']))
                time.sleep(POLL)
            api_ms = (time.monotonic() - started) * 1000
            self.assertEqual('completed', migration['status'])
            stats = self.dest_conn.lookupByUUIDString(
                server['id']).jobStats(
                    test_live_migration.libvirt
                    .VIR_DOMAIN_JOB_STATS_COMPLETED)
            # After a post-copy migration the destination keeps no
            # statistics of the job: its time is the source's last sample,
            # its downtime unknown.
            rows.append((api_ms, stats.get('time_elapsed',
                                           peak['time_elapsed']),
                         stats.get('downtime'), stats.get('setup_time', 0),
                         stats.get('memory_processed', 0) / units.Mi,
                         stats.get('memory_iteration', 0)))
            line = ('run %d: api %7.0f ms  job %6d ms  downtime %4s ms  '
                    'setup %3d ms  memory %6.1f MiB  passes %d' % (
                        (run,) + rows[-1][:2] + (
                            'n/a' if rows[-1][2] is None else rows[-1][2],) +
                        rows[-1][3:]))
            if ARGS.dirty:
                line += '  dirty %.1f MiB/s  throttle %d%%  mode %s' % (
                    peak['memory_dirty_rate'] * peak['memory_page_size'] /
                    units.Mi, peak['auto_converge_throttle'],
                    'post-copy' if 'time_elapsed' not in stats or
                    stats.get('memory_postcopy_requests') else 'pre-copy')
            print(line, flush=True)
            self._delete_server(server)
            # Nova's resource tracker frees the CPU of a guest deleted
            # right after it arrived only in its next periodic task.
            for service in (self.compute, self.compute2):
                service.manager.update_available_resource(self.ctxt)
        downtimes = [r[2] for r in rows if r[2] is not None]
        print('median: api %.0f ms, job %.0f ms, downtime %s ms '
              '(%d runs, %d MiB guest, %s pages, bandwidth %s, dirtying '
              '%s, auto-converge %s, post-copy %s, max downtime %d ms, '
              'force after %s)' % (
                  statistics.median(r[0] for r in rows),
                  statistics.median(r[1] for r in rows),
                  '%.0f' % statistics.median(downtimes) if downtimes
                  else 'n/a', len(rows),
                  ARGS.ram, 'small' if ARGS.small_pages else '2 MiB',
                  '%d MiB/s' % ARGS.bandwidth if ARGS.bandwidth else
                  'unlimited', '%d MiB' % ARGS.dirty if ARGS.dirty else 'no',
                  ARGS.auto_converge, ARGS.post_copy, ARGS.downtime,
                  '%d s/GiB' % ARGS.force_after if ARGS.force_after
                  else 'never'),
              flush=True)


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--runs', type=int, default=3)
    parser.add_argument('--ram', type=int, default=256,
                        help='guest memory in MiB (default 256)')
    parser.add_argument('--small-pages', action='store_true',
                        help='4 KiB pages instead of 2 MiB huge pages')
    parser.add_argument('--bandwidth', type=int, default=0,
                        help='[libvirt] live_migration_bandwidth, MiB/s')
    parser.add_argument('--dirty', type=int, default=0, metavar='MiB',
                        help='the guest rewrites this much memory nonstop')
    parser.add_argument('--auto-converge', action='store_true',
                        help='[libvirt] live_migration_permit_auto_converge')
    parser.add_argument('--post-copy', action='store_true',
                        help='[libvirt] live_migration_permit_post_copy')
    parser.add_argument('--downtime', type=int, default=500, metavar='ms',
                        help='[libvirt] live_migration_downtime (500)')
    parser.add_argument('--force-after', type=int, default=0, metavar='s',
                        help='[libvirt] live_migration_completion_timeout '
                             '(s per GiB, Nova\'s unit) with the '
                             'force_complete action: post-copy if '
                             'permitted, else the guest is paused')
    ARGS = parser.parse_args()
    result = unittest.TextTestRunner(verbosity=0).run(
        Measure('test_measure'))
    return 0 if result.wasSuccessful() else 1


if __name__ == '__main__':
    sys.exit(main())
