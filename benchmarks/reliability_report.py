"""Reliability report: fault scenarios survived, fuzz examples, leaks.

Runs the reliability tests -- the fuzz properties (tests/unit/test_fuzz.py),
the fault scenarios (tests/functional/test_faults.py, libvirtd restarts and
a host reboot in test_host_restart.py, and the QEMU process killed under a
guest in test_lifecycle.py), the hostile inputs and private
files (tests/functional/test_hostile_input.py) -- through stestr, with
$KVMX_RELIABILITY_LOG set so that each test records what it did
(tests/reliability_log.py), then prints:

- each fault scenario and hostile input: survived (its test passed) and
  what it found left on the host (domains, files, network devices,
  Placement allocations, pinned CPUs);
- fuzz examples run per property and how they ended;
- leaks found (must be 0) and failed tests (must be 0).

The functional tests need root and the local libvirtd (see tox.ini);
--unit-only runs the fuzz properties alone. Exit status 1 if a test failed
or a leak was found.

Run from the repo root:
    .venv/bin/python benchmarks/reliability_report.py [--unit-only]
        [--concurrency N]
"""

import argparse
import collections
import io
import json
import os
import subprocess
import sys
import tempfile

import subunit
import testtools

UNIT = r'tests\.unit\.test_fuzz\.'
FUNCTIONAL = (r'tests\.functional\.(test_faults|test_host_restart|'
              r'test_hostile_input)\.|'
              r'tests\.functional\.test_lifecycle\.LifecycleEventTest\.')
# Fault tests of other files that do not record themselves.
UNRECORDED = {
    'tests.functional.test_lifecycle.LifecycleEventTest.'
    'test_qemu_killed_under_running_guest':
        'QEMU killed under a running guest',
}
# Every test run has this deadline (a functional run boots ~20 guests).
TIMEOUT = 3600


class _Statuses(testtools.StreamResult):
    """The final status of each test in a subunit v2 stream."""

    def __init__(self):
        super().__init__()
        self.final = {}

    def status(self, test_id=None, test_status=None, **kwargs):
        if test_id and test_status in ('success', 'fail', 'skip', 'xfail',
                                       'uxsuccess'):
            self.final[test_id] = test_status


def run_tests(regex, concurrency, log_path):
    env = dict(os.environ, KVMX_RELIABILITY_LOG=log_path)
    proc = subprocess.run(
        [sys.executable, '-m', 'stestr', '--test-path', './tests', 'run',
         '--subunit', '--concurrency', str(concurrency), regex],
        env=env, capture_output=True, timeout=TIMEOUT)
    statuses = _Statuses()
    statuses.startTestRun()
    subunit.ByteStreamToStreamResult(
        io.BytesIO(proc.stdout), non_subunit_name='stdout').run(statuses)
    statuses.stopTestRun()
    return statuses.final


def read_records(log_path):
    with open(log_path) as f:
        return [json.loads(line) for line in f if line.strip()]


def report(statuses, records, out=sys.stdout):
    """Print the report; return the number of problems (failed tests and
    leaks)."""
    leaks = 0
    for kind, title in (('fault', 'Fault scenarios'),
                        ('hostile', 'Hostile inputs and file modes')):
        rows = [(r['name'], r['survived'], r['leaks'])
                for r in records if r['kind'] == kind]
        if kind == 'fault':
            rows += [(name, statuses[test] == 'success', [])
                     for test, name in UNRECORDED.items()
                     if test in statuses]
        if not rows:
            continue
        print('%s: %d run, %d survived' % (
            title, len(rows), sum(1 for _n, ok, _l in rows if ok)),
            file=out)
        for name, ok, found in sorted(rows):
            leaks += len(found)
            print('  [%s] %s%s' % ('ok' if ok else 'FAILED', name,
                                   ''.join('\n      left: %s' % item
                                           for item in found)), file=out)
    fuzz = [r for r in records if r['kind'] == 'fuzz']
    if fuzz:
        print('Fuzz: %d examples over %d properties' % (
            sum(r['examples'] for r in fuzz), len(fuzz)), file=out)
        for r in sorted(fuzz, key=lambda r: r['name']):
            stages = collections.Counter()
            for outcome, count in r['outcomes'].items():
                stages[outcome.split(':')[0]] += count
            summary = ', '.join('%s %d' % item
                                for item in sorted(stages.items()))
            print('  %s: %d examples: %s' % (
                r['name'].rsplit('.', 1)[1], r['examples'], summary),
                file=out)
            ours = sorted((o.split(': ', 1)[1], n) for o, n in
                          r['outcomes'].items() if o.startswith('driver'))
            if ours:
                print('    driver refused: %s' % ', '.join(
                    '%s %d' % item for item in ours), file=out)
    failed = sorted(t for t, s in statuses.items() if s == 'fail')
    print('Leaks found: %d' % leaks, file=out)
    print('Tests: %d run, %d failed%s' % (
        len(statuses), len(failed),
        ''.join('\n  ' + t for t in failed)), file=out)
    return leaks + len(failed)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--unit-only', action='store_true',
                        help='only the fuzz properties (no libvirtd)')
    parser.add_argument('--concurrency', type=int, default=2)
    args = parser.parse_args()
    regex = UNIT if args.unit_only else '%s|%s' % (UNIT, FUNCTIONAL)
    fd, log_path = tempfile.mkstemp(prefix='kvmx-reliability-',
                                    suffix='.jsonl')
    os.close(fd)
    try:
        statuses = run_tests(regex, args.concurrency, log_path)
        records = read_records(log_path)
    finally:
        os.unlink(log_path)
    return 1 if report(statuses, records) else 0


if __name__ == '__main__':
    sys.exit(main())
