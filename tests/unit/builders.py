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

"""Real Nova objects for the planner and renderer, built the way Nova hands
them to a driver: an Instance with its Flavor, ImageMeta from Glance's
dict, a RequestContext carrying the owner's names."""

from nova import context as nova_context
from nova import objects

from nova_kvmx.guest import planner
from nova_kvmx.guest import render
from nova_kvmx.guest import spec

objects.register_all()

INSTANCE_UUID = '8a6b7ab2-5a8f-4a84-9dbd-0f7f3f7ec1f3'
IMAGE_ID = '155d900f-4e14-4e4c-a73d-069cbf4541e6'
USER_ID = '2f3c9a1e0c2d4f7f9b8a7c6d5e4f3a2b'
PROJECT_ID = '6d1f4d0a3b7c4e2f8a9b0c1d2e3f4a5b'
INST_DIR = '/var/lib/nova/instances/' + INSTANCE_UUID


def flavor(vcpus=2, memory_mb=512, root_gb=1, extra_specs=None, **kw):
    fields = dict(name='nfv.small', flavorid='42', vcpus=vcpus,
                  memory_mb=memory_mb, root_gb=root_gb, ephemeral_gb=0,
                  swap=0, extra_specs=extra_specs or {})
    fields.update(kw)
    return objects.Flavor(**fields)


def instance(display_name='vnf-1', flavor_obj=None, uuid=INSTANCE_UUID,
             numa_topology=None):
    return objects.Instance(
        id=1, uuid=uuid, display_name=display_name,
        flavor=flavor_obj or flavor(), user_id=USER_ID,
        project_id=PROJECT_ID, kernel_id=None, ramdisk_id=None,
        numa_topology=numa_topology, trusted_certs=None)


def image(with_id=True, **props):
    meta = {'name': 'cirros', 'disk_format': 'qcow2',
            'container_format': 'bare', 'properties': props}
    if with_id:
        meta['id'] = IMAGE_ID
    return objects.ImageMeta.from_dict(meta)


def context(user_name='alice', project_name='nfv-lab'):
    return nova_context.RequestContext(
        user_id=USER_ID, project_id=PROJECT_ID, user_name=user_name,
        project_name=project_name, is_admin=False)


def files(kernel=False, ramdisk=False, config_drive=False, ephemeral=False,
          swap=False):
    return spec.GuestFiles(
        root_disk=INST_DIR + '/disk',
        console_log=INST_DIR + '/console.log',
        kernel=INST_DIR + '/kernel' if kernel else None,
        ramdisk=INST_DIR + '/ramdisk' if ramdisk else None,
        config_drive=INST_DIR + '/disk.config' if config_drive else None,
        ephemeral=INST_DIR + '/disk.eph0' if ephemeral else None,
        swap=INST_DIR + '/disk.swap' if swap else None)


RBD_SECRET = '5f0ad6c6-6c2b-4a1e-9d3e-2b0d8f1c9e11'


def rbd_image(disk, user='nova', secret=RBD_SECRET):
    """An instance disk on RBD, as storage gives it with [libvirt]
    images_type=rbd."""
    return spec.RBDImage(
        name='vms/%s_%s' % (INSTANCE_UUID, disk),
        hosts=(('192.0.2.10', '6789'), ('192.0.2.11', '6789')),
        auth_username=user, auth_secret_uuid=secret if user else None)


def rbd_files(ephemeral=False, swap=False, config_drive=False, **kw):
    """GuestFiles of an instance whose disks are RBD images."""
    return spec.GuestFiles(
        root_disk=rbd_image('disk', **kw),
        console_log=INST_DIR + '/console.log',
        config_drive=INST_DIR + '/disk.config' if config_drive else None,
        ephemeral=rbd_image('disk.eph0', **kw) if ephemeral else None,
        swap=rbd_image('disk.swap', **kw) if swap else None)


def settings(**kw):
    values = dict(virt_type='kvm', machine_type='q35', arch='x86_64',
                  package_version='1.0.0')
    values.update(kw)
    return spec.DriverSettings(**values)


def plan(inst=None, image_meta=None, guest_files=None, driver_settings=None,
         ctxt=None, network_info=None, serial_ports=()):
    return planner.plan_guest(
        ctxt or context(), inst or instance(), image_meta or image(),
        guest_files or files(), driver_settings or settings(),
        network_info=network_info, serial_ports=serial_ports)


def render_xml(**kw):
    """Plan and render with :func:`plan`'s arguments; the domain XML."""
    return render.render_domain(plan(**kw))
