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

"""A host's usage in a file: what ``explain --save-usage`` writes and
``explain --usage FILE`` reads, so that a question about a host in use can
be asked away from it (with its saved capabilities and node devices).

YAML or JSON (JSON is read as YAML)::

    instances:
    - name: vnf-a                 # required
      uuid: 9b1c...               # optional
      resources: {PCPU: 4, MEMORY_MB: 4096}  # Placement; default: from
                                             # the cells
      pci_devices: ["0000:81:02.3"]          # PCI addresses it was given
      cells:                      # Nova's NUMA claim, one per guest node;
      - host_cell: 2              # none for a guest without NUMA topology
        memory_mb: 4096
        page_size: 1G             # 4K, 2M, 1G (or KiB); default: none
        pinned: {0: 8, 1: 24, 2: 9, 3: 25}   # vCPU: host CPU (dedicated)
        shared_vcpus: 4-5         # vCPUs floating on the cell's shared CPUs
        emulator_cpus: "10"       # an isolated emulator thread's CPUs

Each instance becomes Nova's ``InstanceNUMATopology``, counted by Nova's
accounting (:mod:`nova_kvmx.cmd.usage`).
"""

import json

from nova import exception
from nova import objects
from nova.virt import hardware
from oslo_utils import units
import yaml

from nova_kvmx.cmd import diagnose
from nova_kvmx.cmd import domains
from nova_kvmx.cmd import usage as host_usage

_SUFFIXES = {'K': 1, 'M': units.Ki, 'G': units.Mi}


class BadUsageFile(exception.InvalidInput):
    msg_fmt = 'Usage file %(path)s: %(reason)s'


def page_kb(value):
    """KiB of '2M', '1G', '4K' (or a number of KiB)."""
    text = str(value).strip().upper().rstrip('B').rstrip('I')
    if text and text[-1] in _SUFFIXES:
        return int(text[:-1]) * _SUFFIXES[text[-1]]
    return int(text)


def _cpuset(value):
    if value is None or value == '':
        return set()
    if isinstance(value, int):
        return {value}
    if isinstance(value, list):
        return {int(v) for v in value}
    return hardware.parse_cpu_spec(str(value))


def _cell(entry):
    pinned = {int(v): int(p) for v, p in (entry.get('pinned') or {}).items()}
    shared = _cpuset(entry.get('shared_vcpus'))
    policy = (host_usage.SHARED if not pinned else
              host_usage.DEDICATED if not shared else host_usage.MIXED)
    size = entry.get('page_size')
    return objects.InstanceNUMACell(
        id=int(entry['host_cell']), cpuset=shared, pcpuset=set(pinned),
        memory=int(entry['memory_mb']),
        pagesize=page_kb(size) if size not in (None, '') else None,
        cpu_pinning=pinned or None, cpu_policy=policy,
        cpuset_reserved=_cpuset(entry.get('emulator_cpus')) or None)


def _consumer(entry):
    cells = [_cell(cell) for cell in entry.get('cells') or ()]
    claim = objects.InstanceNUMATopology(cells=cells) if cells else None
    if claim is not None and any(c.cpuset_reserved for c in cells):
        claim.emulator_threads_policy = 'isolate'
    resources = entry.get('resources')
    if resources is None:
        vcpus = sum(len(c.cpuset) + len(c.pcpuset) for c in cells)
        resources = domains.resources(claim, vcpus,
                                      sum(c.memory for c in cells))
    return host_usage.Consumer(
        name=str(entry['name']), uuid=entry.get('uuid'), claim=claim,
        resources={str(rc): int(n) for rc, n in resources.items()},
        pci_devices=tuple(str(a) for a in entry.get('pci_devices') or ()))


def load(path):
    """:class:`usage.Usage` of a usage file.

    :raises: BadUsageFile naming the file and the entry
    """
    try:
        with open(path, 'rb') as f:
            data = yaml.safe_load(f)
    except OSError as ex:
        raise BadUsageFile(path=path, reason=ex.strerror or ex)
    except yaml.YAMLError as ex:
        raise BadUsageFile(path=path, reason='not YAML or JSON: %s' %
                           str(ex).replace('\n', ' '))
    if not isinstance(data, dict) or not isinstance(
            data.get('instances', []), list):
        raise BadUsageFile(path=path, reason='expected a mapping with a '
                                             'list "instances"')
    result = host_usage.Usage(source='usage file %s' % path)
    for index, entry in enumerate(data.get('instances') or ()):
        label = 'instances[%d]%s' % (index, ' (%s)' % entry.get('name')
                                     if isinstance(entry, dict) and
                                     entry.get('name') else '')
        try:
            result.consumers.append(_consumer(entry))
        except KeyError as ex:
            raise BadUsageFile(path=path, reason='%s: %s is missing' % (
                label, ex))
        except (TypeError, ValueError, AttributeError,
                exception.Invalid) as ex:
            message = (ex.format_message()
                       if isinstance(ex, exception.NovaException) else ex)
            raise BadUsageFile(path=path, reason='%s: %s' % (label,
                                                             message))
    return result


def _cell_entry(cell):
    entry = {'host_cell': cell.id, 'memory_mb': cell.memory}
    if cell.pagesize:
        entry['page_size'] = diagnose.page_label(cell.pagesize)
    if cell.cpu_pinning:
        entry['pinned'] = dict(sorted(cell.cpu_pinning.items()))
    if cell.cpuset:
        entry['shared_vcpus'] = hardware.format_cpu_spec(cell.cpuset)
    if cell.cpuset_reserved:
        entry['emulator_cpus'] = hardware.format_cpu_spec(
            cell.cpuset_reserved)
    return entry


def entries(usage):
    """The usage as the file's data."""
    result = []
    for consumer in usage.consumers:
        entry = {'name': consumer.name}
        if consumer.uuid:
            entry['uuid'] = consumer.uuid
        entry['resources'] = dict(sorted(consumer.resources.items()))
        if consumer.pci_devices:
            entry['pci_devices'] = list(consumer.pci_devices)
        if consumer.claim is not None:
            entry['cells'] = [_cell_entry(c) for c in consumer.claim.cells]
        result.append(entry)
    return {'source': usage.source, 'instances': result}


def save(usage, path):
    """Write the usage file (YAML for *.yaml and *.yml, JSON otherwise)."""
    data = entries(usage)
    with open(path, 'w') as f:
        if path.endswith(('.yaml', '.yml')):
            yaml.safe_dump(data, f, default_flow_style=None, sort_keys=False)
        else:
            json.dump(data, f, indent=2)
            f.write('\n')
