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

"""``explain --all-hosts``: why a flavor has no valid host anywhere.

Every compute node of the cell database ``[database] connection`` names
is judged as the scheduler judges it, from what the scheduler reads: the
compute service's state (ComputeFilter: disabled, forced down, or not
reporting within ``service_down_time``), the compute node record's NUMA
topology with usage, PCI pools and allocation ratios (NUMATopologyFilter,
PciPassthroughFilter), and the Placement inventory our driver reports for
such a record with the usage of the instances on it. Placement's traits
are not in Nova's database: trait requests are listed as not checked.
Hosts that fit come first; the others are sorted by the first resource
that limits them, then by name.
"""

import re

import nova.conf
from nova import exception
from nova import servicegroup

from nova_kvmx.cmd import explain
from nova_kvmx.cmd import hostview
from nova_kvmx.cmd import novadb
from nova_kvmx.cmd import report

CONF = nova.conf.CONF
# (pattern of a reason, the limiting resource it names), first match wins.
_LIMITS = (
    (r'^Placement: ([A-Z_]+): ', None),
    (r'^Placement: (?:requires|forbids) trait (\S+)', 'trait %s'),
    (r'free (\w+) pages', '%s pages'),
    (r'needs (\w+) pages, the cell has none', '%s pages'),
    (r'whole number of|needs huge pages', 'huge pages'),
    (r'dedicated CPUs|no pinning|thread policy', 'dedicated CPUs'),
    (r'shared CPUs', 'shared CPUs'),
    (r'MiB', 'memory'),
    (r'PCI', 'PCI devices'),
    (r'NUMA nodes|distinct cells|NUMA topology', 'NUMA cells'),
)


def limit_of(reason):
    """The short name of what a reason says is short."""
    for pattern, label in _LIMITS:
        match = re.search(pattern, reason)
        if match:
            if label is None:
                return match.group(1)
            return label % match.group(1) if '%s' in label else label
    return 'NUMA fit'


def _service_problem(service, group):
    if service is None:
        return None
    if service.disabled:
        return ('service disabled', 'nova-compute is disabled%s' % (
            ' (%s)' % service.disabled_reason
            if service.disabled_reason else ''))
    if service.forced_down:
        return ('service down', 'nova-compute is forced down')
    if not group.service_is_up(service):
        return ('service down', 'nova-compute has not reported for more '
                'than service_down_time (%ds)' % CONF.service_down_time)
    return None


def judge(node, usage, service, req, group):
    """A row: the host, whether it fits, what limits it and why."""
    exp = explain.explain_view(hostview.from_record(node, usage), req)
    row = {'host': node.host, 'node': node.hypervisor_hostname,
           'fits': exp.fits, 'limited_by': None, 'reason': None,
           'reasons': list(exp.reasons), 'claim': exp.claim,
           'not_checked': exp.placement['not_checked'],
           'notes': list(exp.notes)}
    problem = _service_problem(service, group)
    if problem:
        row.update(fits=False, limited_by=problem[0], reason=problem[1])
        row['reasons'].insert(0, problem[1])
    elif exp.reasons:
        row.update(limited_by=limit_of(exp.reasons[0]),
                   reason=exp.reasons[0])
    return row


def rows_for(hosts, req, group):
    rows = [judge(node, usage, service, req, group)
            for node, usage, service in hosts]
    return sorted(rows, key=lambda r: (not r['fits'], r['limited_by'] or '',
                                       r['host'], r['node']))


def summary(rows):
    """{limiting resource: number of hosts}."""
    counts = {}
    for row in rows:
        if not row['fits']:
            counts[row['limited_by']] = counts.get(row['limited_by'], 0) + 1
    return counts


def run(args, requests, out):
    url = CONF.database.connection
    if not url:
        raise exception.InvalidInput(
            reason='--all-hosts reads Nova\'s database: give a nova.conf '
                   'with [database] connection (the cell database)')
    hosts = novadb.all_usage(url)
    group = servicegroup.API()
    answers = []
    for name, req in requests:
        if isinstance(req, exception.NovaException):
            answers.append({'name': name, 'status': 2,
                            'error': req.format_message()})
            continue
        rows = rows_for(hosts, req, group)
        fitting = [r['host'] for r in rows if r['fits']]
        answers.append({
            'name': name, 'status': 0 if fitting else 1,
            'request': explain._request_view(req),
            'source': 'Nova\'s database at %s' % novadb.masked(url),
            'hosts': rows, 'fits': fitting, 'limited_by': summary(rows)})
    if args.format == 'json':
        out.write(report.to_json(answers if args.flavors else answers[0])
                  + '\n')
    else:
        lines = []
        for answer in answers:
            lines += report.fleet_lines(answer) + ['']
        out.write('\n'.join(lines[:-1]) + '\n')
    return max(answer['status'] for answer in answers)
