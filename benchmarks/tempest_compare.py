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

"""Tempest on nova-kvmx and on Nova's stock libvirt driver, side by side.

Reads the results ``deploy/tempest`` keeps per driver (subunit streams in
/opt/kvmx-cloud/tempest-results: ``kvmx.subunit`` and ``libvirt.subunit``,
from the same deployment with ``deploy/up --driver kvmx`` and ``--driver
libvirt``) and prints, per test, each driver's outcome and duration and
their ratio, grouped by what the test exercises (boot to ACTIVE, each
lifecycle action, migrations, ...); then the totals and every test the
stock driver passes that ours does not (there must be none). A newer
``<driver>-regex.subunit`` (``deploy/tempest --regex``: failures run again
after a fix) replaces the results of the tests it ran.

    .venv/bin/python benchmarks/tempest_compare.py [--results DIR] [--all]

Durations are Tempest's per-test wall times on a 2-core machine under TCG:
they include the API, the scheduler and the guest's boot, not only the
driver; read them as "same order or not", and the ratio of medians per
group as the figure.
"""

import argparse
import collections
import os
import re
import statistics
import sys

import subunit
import testtools

RESULTS = '/opt/kvmx-cloud/tempest-results'
DRIVERS = ('kvmx', 'libvirt')
# (group, regular expression on the test id), first match wins.
GROUPS = (
    ('live migration', r'test_live_migration|test_live_block|'
                       r'LiveMigration|LiveAutoBlock'),
    ('cold migration / resize', r'resize|migrat'),
    ('rescue', r'rescue'),
    ('shelve', r'shelve'),
    ('snapshot / image', r'images\.|snapshot|create_image|createImage|'
                         r'backup'),
    ('rebuild', r'rebuild'),
    ('reboot', r'reboot'),
    ('stop / start', r'stop_start|_stop|_start|lock'),
    ('pause / suspend', r'pause|suspend'),
    ('interfaces', r'interface'),
    ('console', r'console|vnc'),
    ('boot', r'create_server|test_servers|multiple_create|server_group|'
             r'list_server|server_basic|server_multinode|server_addresses|'
             r'metadata|tags|instance_actions|delete_server|disk_config|'
             r'multi_nic'),
    ('flavors', r'flavor'),
)


def load(path):
    """{test id: (status, seconds or None)} of a subunit v2 stream."""
    results = {}

    class Collector(testtools.StreamResult):
        def __init__(self):
            super().__init__()
            self.started = {}

        def status(self, test_id=None, test_status=None, timestamp=None,
                   **kwargs):
            if test_id is None or test_id.startswith('setUpClass'):
                return
            test_id = re.sub(r'\[.*\]$', '', test_id)
            if test_status == 'inprogress':
                self.started[test_id] = timestamp
            elif test_status in ('success', 'fail', 'skip', 'xfail',
                                 'uxsuccess'):
                begun = self.started.get(test_id)
                seconds = ((timestamp - begun).total_seconds()
                           if begun and timestamp else None)
                results[test_id] = (test_status, seconds)

    with open(path, 'rb') as stream:
        case = subunit.ByteStreamToStreamResult(stream)
        collector = Collector()
        collector.startTestRun()
        case.run(collector)
        collector.stopTestRun()
    return results


def group_of(test_id):
    for name, pattern in GROUPS:
        if re.search(pattern, test_id):
            return name
    return 'other API'


def short(test_id):
    return re.sub(r'^tempest\.(api\.compute\.|scenario\.)', '', test_id)


def cell(result):
    if result is None:
        return '%-7s %8s' % ('-', '')
    status, seconds = result
    return '%-7s %8s' % (status, '%.1f' % seconds if seconds else '')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--results', default=RESULTS)
    parser.add_argument('--all', action='store_true',
                        help='also list skipped tests')
    args = parser.parse_args(argv)
    runs = {}
    for driver in DRIVERS:
        path = os.path.join(args.results, driver + '.subunit')
        if not os.path.exists(path):
            sys.exit('%s missing: run deploy/up --driver %s, then '
                     'deploy/tempest' % (path, driver))
        runs[driver] = load(path)
        # A later `deploy/tempest --regex` run (the failures run again after
        # a fix) stands for the tests it ran.
        rerun = os.path.join(args.results, driver + '-regex.subunit')
        if os.path.exists(rerun) and \
                os.path.getmtime(rerun) > os.path.getmtime(path):
            again = load(rerun)
            runs[driver].update(again)
            print('%s: %d results from the rerun %s' % (driver, len(again),
                                                        rerun))
    tests = sorted(set(runs['kvmx']) | set(runs['libvirt']))
    by_group = collections.defaultdict(list)
    for test_id in tests:
        by_group[group_of(test_id)].append(test_id)

    print('%-78s %-16s %-16s %6s' % ('test', 'nova-kvmx', 'libvirt',
                                     'ratio'))
    ratios = {}
    for group in [g for g, _ in GROUPS] + ['other API']:
        rows, mine, theirs = [], [], []
        for test_id in by_group.get(group, []):
            ours, stock = runs['kvmx'].get(test_id), runs['libvirt'].get(
                test_id)
            if not args.all and all(r is None or r[0] == 'skip'
                                    for r in (ours, stock)):
                continue
            ratio = ''
            if ours and stock and ours[0] == stock[0] == 'success' and \
                    ours[1] and stock[1]:
                ratio = '%.2f' % (ours[1] / stock[1])
                mine.append(ours[1])
                theirs.append(stock[1])
            rows.append('  %-76s %s %s %6s' % (short(test_id)[:76],
                                               cell(ours), cell(stock),
                                               ratio))
        if rows:
            print('\n%s (%d)' % (group, len(rows)))
            print('\n'.join(rows))
            if mine:
                ratios[group] = (statistics.median(mine),
                                 statistics.median(theirs), len(mine))

    print('\nmedian seconds per group (tests both drivers passed)')
    print('  %-26s %9s %9s %7s %5s' % ('group', 'nova-kvmx', 'libvirt',
                                       'ratio', 'n'))
    for group, (mine, theirs, n) in ratios.items():
        print('  %-26s %9.1f %9.1f %7.2f %5d' % (group, mine, theirs,
                                                 mine / theirs, n))
    for driver in DRIVERS:
        counts = collections.Counter(s for s, _ in runs[driver].values())
        print('%-8s %s' % (driver, ', '.join(
            '%s %d' % item for item in sorted(counts.items()))))
    gaps = [t for t in tests
            if runs['libvirt'].get(t, ('',))[0] == 'success' and
            runs['kvmx'].get(t, ('',))[0] != 'success']
    print('\npassed on the stock driver, not on nova-kvmx: %d' % len(gaps))
    for test_id in gaps:
        print('  %s (%s)' % (test_id, runs['kvmx'].get(test_id, ('not run',))
                             [0]))
    return 1 if gaps else 0


if __name__ == '__main__':
    sys.exit(main())
