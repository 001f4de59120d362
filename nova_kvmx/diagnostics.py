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

"""A guest's diagnostics and the host's CPU stats and uptime.

What ``GET /servers/{id}/diagnostics`` shows (the legacy dict of
microversion 2.1 and the Diagnostics object of 2.48), built as Nova's
libvirt driver builds them: vCPU times, per-disk and per-interface
counters, memory. Counters libvirt cannot give for a device are left
out, as Nova does.
"""

from nova import block_device
from nova.compute import power_state
from nova import exception
from nova.objects import diagnostics as diagnostics_obj
from nova.virt import configdrive
from oslo_concurrency import processutils
from oslo_log import log as logging
from oslo_utils import timeutils
from oslo_utils import units

from nova_kvmx import safe_xml

try:
    import libvirt
except ImportError:  # pragma: no cover - libvirt-python is a requirement
    libvirt = None

LOG = logging.getLogger(__name__)

DISK_FIELDS = ('read_req', 'read', 'write_req', 'write', 'errors')
NIC_FIELDS = ('rx', 'rx_packets', 'rx_errors', 'rx_drop',
              'tx', 'tx_packets', 'tx_errors', 'tx_drop')


def io_devices(domain_xml):
    """The target devs of a domain's disks and interfaces:
    ``{'volumes': ['vda', ...], 'ifaces': ['tap...', ...]}``."""
    doc = safe_xml.fromstring(domain_xml)
    return {
        'volumes': [t.get('dev') for t in doc.findall(
            './devices/disk/target') if t.get('dev')],
        'ifaces': [t.get('dev') for t in doc.findall(
            './devices/interface/target') if t.get('dev')],
    }


def _vcpu_times(guest):
    try:
        return [(vcpu.id, vcpu.time) for vcpu in guest.get_vcpus_info()]
    except libvirt.libvirtError:
        return []


def _stats(call, dev):
    """A device's counters, or None where libvirt has none for it."""
    try:
        return call(dev)
    except libvirt.libvirtError:
        return None


def legacy_diagnostics(guest):
    """The dict of microversions < 2.48 (Nova's get_diagnostics)."""
    domain = guest._domain
    output = {'cpu%d_time' % vid: time for vid, time in _vcpu_times(guest)}
    devs = io_devices(guest.get_xml_desc())
    for disk in devs['volumes']:
        stats = _stats(domain.blockStats, disk)
        if stats is not None:
            output.update(('%s_%s' % (disk, field), value)
                          for field, value in zip(DISK_FIELDS, stats))
    for iface in devs['ifaces']:
        stats = _stats(domain.interfaceStats, iface)
        if stats is not None:
            output.update(('%s_%s' % (iface, field), value)
                          for field, value in zip(NIC_FIELDS, stats))
    output['memory'] = domain.maxMemory()
    try:
        output.update(('memory-' + key, value)
                      for key, value in domain.memoryStats().items())
    except (libvirt.libvirtError, AttributeError):
        pass
    return output


def instance_diagnostics(guest, instance, virt_type):
    """The Diagnostics object of microversion 2.48 (Nova's
    get_instance_diagnostics)."""
    domain = guest._domain
    xml = guest.get_xml_desc()
    state, max_mem, mem, _ncpu, _cpu_time = guest._get_domain_info()
    uptime = timeutils.delta_seconds(
        timeutils.normalize_time(instance.launched_at), timeutils.utcnow())
    diags = diagnostics_obj.Diagnostics(
        state=power_state.STATE_MAP[state], driver='libvirt',
        config_drive=configdrive.required_by(instance),
        hypervisor=virt_type, hypervisor_os='linux', uptime=uptime)
    # MiB, as the API documents them: libvirt gives KiB (Nova's libvirt
    # driver divides by Mi, so its 256 MiB guest shows 0).
    diags.memory_details = diagnostics_obj.MemoryDiagnostics(
        maximum=max_mem // units.Ki, used=mem // units.Ki)
    for vid, time in _vcpu_times(guest):
        diags.add_cpu(id=vid, time=time)
    for disk in io_devices(xml)['volumes']:
        stats = _stats(domain.blockStats, disk)
        if stats is not None:
            diags.add_disk(read_requests=stats[0], read_bytes=stats[1],
                           write_requests=stats[2], write_bytes=stats[3],
                           errors_count=stats[4])
    for interface in safe_xml.fromstring(xml).findall('./devices/interface'):
        mac = interface.find('mac').get('address')
        target = interface.find('target')
        dev = target.get('dev') if target is not None else None
        if not dev:
            # A port with no host device (no counters), e.g. a VF.
            diags.add_nic(mac_address=mac)
            continue
        stats = _stats(domain.interfaceStats, dev)
        if stats is not None:
            diags.add_nic(mac_address=mac, rx_octets=stats[0],
                          rx_packets=stats[1], rx_errors=stats[2],
                          rx_drop=stats[3], tx_octets=stats[4],
                          tx_packets=stats[5], tx_errors=stats[6],
                          tx_drop=stats[7])
    return diags


def block_stats(host, instance, disk_id):
    """(rd_req, rd_bytes, wr_req, wr_bytes, errs) of one of a guest's
    disks, or None when the guest or the disk is gone (Nova logs and
    returns None too)."""
    try:
        guest = host.get_guest(instance)
        return guest.get_block_device(disk_id).blockStats()
    except libvirt.libvirtError as ex:
        LOG.info('Getting block stats failed, device might have been '
                 'detached. Disk=%(disk)s Code=%(code)s Error=%(ex)s',
                 {'disk': disk_id, 'code': ex.get_error_code(), 'ex': ex},
                 instance=instance)
    except exception.InstanceNotFound:
        LOG.info('Could not find domain in libvirt for instance %s. '
                 'Cannot get block stats for device', instance.name,
                 instance=instance)
    return None


def volume_usage(host, compute_host_bdms):
    """The I/O counters of the volumes attached to the host's guests, for
    Nova's volume usage audit (``[DEFAULT] volume_usage_poll_interval``),
    as Nova's libvirt driver reports them: one entry per volume whose
    guest disk answers."""
    usage = []
    for item in compute_host_bdms:
        instance = item['instance']
        for bdm in item['instance_bdms']:
            stats = block_stats(host, instance,
                                block_device.strip_dev(bdm['device_name']))
            if stats:
                usage.append(dict(
                    volume=bdm['volume_id'], instance=instance,
                    rd_req=stats[0], rd_bytes=stats[1], wr_req=stats[2],
                    wr_bytes=stats[3]))
    return usage


def host_uptime():
    """The output of ``uptime`` (what ``GET /os-hypervisors/{id}/uptime``
    shows), as Nova's libvirt driver runs it."""
    out, _err = processutils.execute('env', 'LANG=C', 'uptime')
    return out
