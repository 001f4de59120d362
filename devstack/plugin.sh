#!/bin/bash
# plugin.sh - DevStack plugin of nova-kvmx
#
# Installs the nova-kvmx compute driver on nodes that run nova-compute (n-cpu)
# and points Nova at it (compute_driver = kvmx.KVMXDriver). Variables and
# their defaults are in devstack/settings.
#
# Keep VIRT_DRIVER at its default (libvirt): DevStack then installs and
# starts libvirtd, adds the stack user to the libvirt group and runs
# nova-compute in that group, all of which this driver needs too. This plugin
# then replaces the compute driver in post-config.

# Save trace setting
_XTRACE_NOVA_KVMX=$(set +o | grep xtrace)
set +o xtrace


# install_nova_kvmx - system packages and the Python package
function install_nova_kvmx {
    # shellcheck disable=SC2086 # a list of package names, split on purpose
    install_package $NOVA_KVMX_PACKAGES
    # A regular (non-editable) install with DevStack's constraints handling:
    # an editable install would map the top-level ``nova`` package to this
    # tree (for nova/virt/kvmx.py) and shadow Nova itself.
    setup_install "$NOVA_KVMX_DIR"
}

# configure_nova_kvmx - point nova-compute at the driver
#
# The options go to $NOVA_CONF, not $NOVA_CPU_CONF: DevStack's
# start_nova_compute builds $NOVA_CPU_CONF later, by copying $NOVA_CONF and
# merging local.conf's post-config sections for $NOVA_CPU_CONF into it, so
# anything written to $NOVA_CPU_CONF here would be lost. Sections for
# $NOVA_CONF or $NOVA_CPU_CONF in local.conf still override these values.
function configure_nova_kvmx {
    iniset "$NOVA_CONF" DEFAULT compute_driver kvmx.KVMXDriver
    iniset "$NOVA_CONF" kvmx virt_type "$NOVA_KVMX_VIRT_TYPE"
    iniset "$NOVA_CONF" kvmx connection_uri "$NOVA_KVMX_CONNECTION_URI"
    if [[ -n "$NOVA_KVMX_CPU_DEDICATED_SET" ]]; then
        iniset "$NOVA_CONF" compute cpu_dedicated_set \
            "$NOVA_KVMX_CPU_DEDICATED_SET"
    fi
    if [[ -n "$NOVA_KVMX_CPU_SHARED_SET" ]]; then
        iniset "$NOVA_CONF" compute cpu_shared_set "$NOVA_KVMX_CPU_SHARED_SET"
    fi
}


if is_service_enabled n-cpu; then
    if [[ "$1" == "stack" && "$2" == "install" ]]; then
        if [[ "$VIRT_DRIVER" != "libvirt" ]]; then
            warn $LINENO "nova-kvmx expects VIRT_DRIVER=libvirt (the" \
                "default), which sets up libvirtd for nova-compute;" \
                "VIRT_DRIVER is '$VIRT_DRIVER'"
        fi
        echo_summary "Installing nova-kvmx"
        install_nova_kvmx

    elif [[ "$1" == "stack" && "$2" == "post-config" ]]; then
        echo_summary "Configuring nova-kvmx"
        configure_nova_kvmx
    fi

    if [[ "$1" == "unstack" ]]; then
        # Nothing to stop: DevStack's unstack stops nova-compute, and the
        # guests are left running, as with Nova's libvirt driver.
        :
    fi

    if [[ "$1" == "clean" ]]; then
        # Nothing to remove yet: DevStack's cleanup_nova destroys the
        # instance-* domains (ours are named after instance.name, like the
        # libvirt driver's) and empties the instances path; the options
        # written above go with /etc/nova.
        :
    fi
fi

# Restore xtrace
$_XTRACE_NOVA_KVMX
