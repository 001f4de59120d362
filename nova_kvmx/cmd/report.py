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

"""Text output of the operator commands: aligned tables for people, JSON
for scripts."""

import json


def table(headers, rows, indent='  '):
    """Lines of a left-aligned table; None cells print as '-'."""
    rows = [['-' if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in rows))
              for i, h in enumerate(headers)]
    lines = []
    for row in [list(headers)] + rows:
        lines.append(indent + '  '.join(
            v.ljust(w) for v, w in zip(row, widths)).rstrip())
    return lines


def to_json(data):
    return json.dumps(data, indent=2, sort_keys=True)


def _kv(mapping):
    return ', '.join('%s=%s' % kv for kv in sorted(mapping.items())) or '-'


def _cells_table(host):
    if not host['cells']:
        return ['  no NUMA cells reported']
    return table(
        ('cell', 'shared CPUs', 'dedicated CPUs', 'pinned', 'memory MiB',
         'used MiB', 'free pages'),
        [(c['cell'], c['shared_cpus'], c['dedicated_cpus'],
          c.get('pinned_cpus', '-'), c['memory_mb'],
          c.get('memory_used_mb', 0),
          ', '.join('%s=%s' % kv for kv in c['free_pages'].items()))
         for c in host['cells']])


def cpu_ranges(cpus):
    """'2-5,8' of CPU numbers (as Nova's format_cpu_spec)."""
    ranges = []
    for cpu in sorted(set(cpus)):
        if ranges and cpu == ranges[-1][1] + 1:
            ranges[-1][1] = cpu
        else:
            ranges.append([cpu, cpu])
    return ','.join('%d-%d' % (a, b) if b > a else str(a)
                    for a, b in ranges)


def _instance_rows(instances):
    rows = []
    for inst in instances:
        cells = inst.get('cells') or []
        rows.append((
            inst['name'],
            ','.join(str(c['host_cell']) for c in cells) or '-',
            ' '.join(cpu_ranges(c['pinned'].values())
                     for c in cells if c.get('pinned')) or '-',
            ', '.join('%s %s' % (c['memory_mb'], c['page_size'])
                      if c.get('page_size') else str(c['memory_mb'])
                      for c in cells) or '-',
            _kv(inst.get('resources') or {}),
            ','.join(inst.get('pci_devices') or ()) or '-'))
    return rows


def usage_lines(usage):
    lines = ['  in use (from %s): %d instance%s' % (
        usage['source'], len(usage['instances']),
        '' if len(usage['instances']) == 1 else 's')]
    if usage['instances']:
        lines += table(('instance', 'host cells', 'pinned CPUs',
                        'memory MiB (pages)', 'Placement', 'PCI'),
                       _instance_rows(usage['instances']), indent='    ')
    return lines


def explanation_lines(exp):
    """The human-readable form of an ``explain.Explanation.as_dict()``."""
    host, req, placement = exp['host'], exp['request'], exp['placement']
    lines = ['Host: %s' % host['source']]
    lines += _cells_table(host)
    lines.append('  Placement inventory (capacity): %s' % _kv(
        host['inventory']))
    if host.get('used'):
        lines.append('  Placement usage: %s' % _kv(host['used']))
    if exp.get('usage'):
        lines += usage_lines(exp['usage'])
    lines += ['', 'Request: %d vCPUs, %d MiB, %d GiB disk' % (
        req['vcpus'], req['memory_mb'], req['disk_gb'])]
    lines.append('  extra specs: %s' % _kv(req['extra_specs']))
    if req['image_properties']:
        lines.append('  image properties: %s' % _kv(
            req['image_properties']))
    lines.append('  Placement: resources %s' % _kv(placement['resources']))
    if placement['required_traits'] or placement['forbidden_traits']:
        lines.append('  traits: required %s; forbidden %s' % (
            ','.join(placement['required_traits']) or '-',
            ','.join(placement['forbidden_traits']) or '-'))
    if placement['not_checked']:
        lines.append('  not checked here: %s' % ', '.join(
            placement['not_checked']))
    lines.append('  NUMA fit: %s' % exp['numa'])

    lines += ['', 'Verdict: %s' % ('FITS' if exp['fits'] else
                                   'DOES NOT FIT')]
    if exp['guest_cells']:
        lines += ['', 'Guest NUMA nodes']
        lines += table(
            ('guest node', 'host cell', 'vCPUs', 'dedicated', 'memory MiB',
             'pages'),
            [(c['guest_node'], c['host_cell'], c['vcpus'],
              c['dedicated_vcpus'], c['memory_mb'],
              '%d x %s' % (c['pages'], c['page_size'])
              if c['page_size'] else None) for c in exp['guest_cells']])
    if exp['vcpu_pins'] and (exp['fits'] or exp['guest_cells']):
        lines += ['', 'vCPUs']
        lines += table(
            ('vCPU', 'host CPUs', 'host cell', 'pinned', 'realtime'),
            [(p['vcpu'], p['host_cpus'], p['host_cell'],
              'yes' if p['pinned'] else 'floating',
              'yes' if p['realtime'] else 'no') for p in exp['vcpu_pins']])
    if exp['emulator_threads']:
        lines.append('  emulator threads (policy %s): host CPUs %s' % (
            exp['emulator_threads']['policy'] or 'none',
            exp['emulator_threads']['host_cpus']))
    if exp['pci_devices']:
        lines += ['', 'PCI devices']
        lines += table(
            ('alias', 'address', 'type', 'vendor:product', 'NUMA node'),
            [(d['alias'], d['address'], d['dev_type'],
              '%s:%s' % (d['vendor_id'], d['product_id']), d['numa_node'])
             for d in exp['pci_devices']])
    if exp['reasons']:
        lines += ['', 'Why not'] + ['  ' + r for r in exp['reasons']]
    if exp['notes']:
        lines += [''] + ['Note: ' + n for n in exp['notes']]
    return lines


def _cells_of(exp):
    return ','.join(str(c['host_cell']) for c in exp['guest_cells']) or '-'


def batch_lines(answers):
    """One line per flavor of ``[(name, status, explanation dict or error
    message)]``, after the host they were asked of."""
    lines = []
    first = next((exp for _n, status, exp in answers if status != 2), None)
    if first is not None:
        lines.append('Host: %s' % first['host']['source'])
        if first.get('usage'):
            lines += usage_lines(first['usage'])
        lines.append('')
    rows = []
    for name, status, exp in answers:
        if status == 2:
            rows.append((name, 'BAD INPUT', '-', exp))
        else:
            rows.append((name, 'FITS' if exp['fits'] else 'DOES NOT FIT',
                         _cells_of(exp),
                         exp['reasons'][0] if exp['reasons'] else ''))
    return lines + table(('flavor', 'verdict', 'host cells', 'why not'),
                         rows, indent='')


def check_lines(results):
    """PASS/WARN/FAIL lines of host-check results, each with its fix."""
    lines = []
    for r in results:
        lines.append('%-4s  %s: %s' % (r.status, r.name, r.detail))
        if r.fix and r.status != 'PASS':
            lines.append('      fix: %s' % r.fix)
    return lines


def fleet_lines(answer):
    """The ``explain --all-hosts`` answer for one flavor."""
    if answer['status'] == 2:
        return ['Flavor %s: bad input: %s' % (answer['name'],
                                              answer['error'])]
    req, rows = answer['request'], answer['hosts']
    lines = ['Request: %d vCPUs, %d MiB, %d GiB disk; extra specs: %s' % (
        req['vcpus'], req['memory_mb'], req['disk_gb'],
        _kv(req['extra_specs']))]
    lines.append('Hosts: %d compute nodes in %s' % (
        len(rows), answer['source']))
    lines.append('Fits on %d: %s' % (len(answer['fits']),
                                     ', '.join(answer['fits']) or 'none'))
    if answer['limited_by']:
        lines.append('Limited by: %s' % ', '.join(
            '%s (%d)' % kv for kv in sorted(
                answer['limited_by'].items(), key=lambda kv: -kv[1])))
    lines.append('')
    lines += table(
        ('host', 'node', 'verdict', 'host cells', 'limited by', 'why not'),
        [(r['host'], r['node'], 'FITS' if r['fits'] else 'no',
          ','.join(str(c['host_cell']) for c in r['claim'])
          if r['fits'] else '-',
          r['limited_by'], r['reason']) for r in rows], indent='  ')
    unchecked = sorted({item for r in rows for item in r['not_checked']})
    if unchecked:
        lines += ['', 'Note: not checked here: %s' % ', '.join(unchecked)]
    return lines
