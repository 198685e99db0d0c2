// Command kubeletconfig prints the kubelet's effective configuration as JSON, computed by the
// kubelet's own code from k8s.io/kubernetes (the version e2e/controlplane/go.mod pins): it takes
// a kubelet command line (`--config FILE`, `--config-dir DIR`, any other kubelet flag), runs
// the kubelet command's start-up up to and including the validation of the configuration,
// and prints the resulting KubeletConfiguration (kubelet.config.k8s.io/v1beta1) on stdout
// instead of starting the kubelet, as {"kubeletConfiguration": ..., "seccompDefault": ...}
// (see Output). Where the kubelet would refuse to start, it prints the
// kubelet's error on stderr and exits non-zero.
//
// The statements of the kubelet command's RunE up to that validation are copied verbatim
// from cmd/kubelet/app/server.go (NewKubeletCommand), and the unexported functions they call
// are in upstream.go; `kubeletconfig --verify-upstream SERVER_GO` checks both copies against
// the module's source (token for token, comments aside). The kube-baseline differential test
// (e2e/tests/kubelet_differential.rs) compares kube-baseline's own computation with this.
//
// Built and cached by e2e/kubeletconfig-build.
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/component-base/logs"
	logsapi "k8s.io/component-base/logs/api/v1"
	_ "k8s.io/component-base/logs/json/register" // the JSON log format, as cmd/kubelet registers it
	"k8s.io/component-base/version/verflag"
	"k8s.io/klog/v2"
	kubeletconfigv1beta1 "k8s.io/kubelet/config/v1beta1"
	"k8s.io/kubernetes/cmd/kubelet/app/options"
	"k8s.io/kubernetes/pkg/features" // registers the kubelet's feature gates, as cmd/kubelet does
	kubeletconfiginternal "k8s.io/kubernetes/pkg/kubelet/apis/config"
	kubeletconfigv1beta1conversion "k8s.io/kubernetes/pkg/kubelet/apis/config/v1beta1"
	kubeletconfigvalidation "k8s.io/kubernetes/pkg/kubelet/apis/config/validation"
)

// The kubelet's component name (k8s.io/kubernetes/pkg/kubelet/server.ComponentKubelet,
// not imported: that package pulls in the whole kubelet server).
const componentKubelet = "kubelet"

//go:embed upstream.go
var upstreamSource string

//go:embed main.go
var mainSource string

// As cmd/kubelet/app/server.go's init: the logging feature gates, which the validation of
// the logging configuration reads.
func init() {
	utilruntime.Must(logsapi.AddFeatureGates(utilfeature.DefaultMutableFeatureGate))
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "--verify-upstream" {
		if err := verifyUpstream(os.Args[2]); err != nil {
			fmt.Fprintf(os.Stderr, "kubeletconfig: %v\n", err)
			os.Exit(1)
		}
		fmt.Println("kubeletconfig: the copied kubelet code is identical to", os.Args[2])
		return
	}
	ctx := context.Background()
	cmd := newKubeletCommand(ctx)
	cmd.SetArgs(os.Args[1:])
	cmd.SilenceErrors = true
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "kubelet would refuse to start: %v\n", err)
		os.Exit(1)
	}
}

// newKubeletCommand is NewKubeletCommand of cmd/kubelet/app/server.go with its RunE cut after
// the configuration is validated: the rest of RunE builds the kubelet's dependencies and
// runs it; here the configuration is printed instead.
func newKubeletCommand(ctx context.Context) *cobra.Command {
	logger := klog.FromContext(ctx)
	cleanFlagSet := pflag.NewFlagSet(componentKubelet, pflag.ContinueOnError)
	cleanFlagSet.SetNormalizeFunc(cliflag.WordSepNormalizeFunc)
	kubeletFlags := options.NewKubeletFlags()

	kubeletConfig, err := options.NewKubeletConfiguration()
	// programmer error
	if err != nil {
		logger.Error(err, "Failed to create a new kubelet configuration")
		os.Exit(1)
	}

	cmd := &cobra.Command{
		Use:                componentKubelet,
		DisableFlagParsing: true,
		SilenceUsage:       true,
		RunE: func(cmd *cobra.Command, args []string) error {
			// initial flag parse, since we disable cobra's flag parsing
			if err := cleanFlagSet.Parse(args); err != nil {
				return fmt.Errorf("failed to parse kubelet flag: %w", err)
			}

			// check if there are non-flag arguments in the command line
			cmds := cleanFlagSet.Args()
			if len(cmds) > 0 {
				return fmt.Errorf("unknown command %+s", cmds[0])
			}

			// short-circuit on help
			help, err := cleanFlagSet.GetBool("help")
			if err != nil {
				return errors.New(`"help" flag is non-bool, programmer error, please correct`)
			}
			if help {
				return cmd.Help()
			}

			// short-circuit on verflag
			verflag.PrintAndExitIfRequested()

			// set feature gates from initial flags-based config
			if err := utilfeature.DefaultMutableFeatureGate.SetFromMap(kubeletConfig.FeatureGates); err != nil {
				return fmt.Errorf("failed to set feature gates from initial flags-based config: %w", err)
			}

			// validate the initial KubeletFlags
			if err := options.ValidateKubeletFlags(kubeletFlags); err != nil {
				return fmt.Errorf("failed to validate kubelet flags: %w", err)
			}

			// load kubelet config file, if provided
			if len(kubeletFlags.KubeletConfigFile) > 0 {
				kubeletConfig, err = loadConfigFile(ctx, kubeletFlags.KubeletConfigFile)
				if err != nil {
					return fmt.Errorf("failed to load kubelet config file, path: %s, error: %w", kubeletFlags.KubeletConfigFile, err)
				}
			}
			// Merge the kubelet configurations if --config-dir is set
			var skippedDropinFiles []string
			if len(kubeletFlags.KubeletDropinConfigDirectory) > 0 {
				skippedDropinFiles, err = mergeKubeletConfigurations(kubeletConfig, kubeletFlags.KubeletDropinConfigDirectory)
				if err != nil {
					return fmt.Errorf("failed to merge kubelet configs: %w", err)
				}
			}

			if len(kubeletFlags.KubeletConfigFile) > 0 || len(kubeletFlags.KubeletDropinConfigDirectory) > 0 {
				// We must enforce flag precedence by re-parsing the command line into the new object.
				// This is necessary to preserve backwards-compatibility across binary upgrades.
				// See issue #56171 for more details.
				if err := kubeletConfigFlagPrecedence(kubeletConfig, args); err != nil {
					return fmt.Errorf("failed to precedence kubeletConfigFlag: %w", err)
				}
				// update feature gates based on new config
				if err := utilfeature.DefaultMutableFeatureGate.SetFromMap(kubeletConfig.FeatureGates); err != nil {
					return fmt.Errorf("failed to set feature gates from initial flags-based config: %w", err)
				}
			}

			// Config and flags parsed, now we can initialize logging.
			logs.InitLogs()
			// Retrieve the logger again to reflect the updated log settings
			logger = klog.FromContext(ctx)
			if err := logsapi.ValidateAndApplyAsField(&kubeletConfig.Logging, utilfeature.DefaultFeatureGate, field.NewPath("logging")); err != nil {
				return fmt.Errorf("initialize logging: %v", err)
			}
			cliflag.PrintFlags(cleanFlagSet)

			// We always validate the local configuration (command line + config file).
			// This is the default "last-known-good" config for dynamic config, and must always remain valid.
			if err := kubeletconfigvalidation.ValidateKubeletConfiguration(kubeletConfig, utilfeature.DefaultFeatureGate); err != nil {
				return fmt.Errorf("failed to validate kubelet configuration, error: %w, path: %s", err, kubeletConfig)
			}

			// End of the copy of the kubelet's RunE.
			_ = skippedDropinFiles
			return printConfig(kubeletFlags, kubeletConfig)
		},
	}

	// keep cleanFlagSet separate, so Cobra doesn't pollute it with the global flags
	kubeletFlags.AddFlags(cleanFlagSet)
	options.AddKubeletConfigFlags(cleanFlagSet, kubeletConfig)
	options.AddGlobalFlags(cleanFlagSet)
	cleanFlagSet.BoolP("help", "h", false, fmt.Sprintf("help for %s", cmd.Name()))
	return cmd
}

// Output is what the program prints: the effective KubeletConfiguration, and the values the
// kubelet computes from it and its other flags where a setting is not in the configuration
// alone.
type Output struct {
	KubeletConfiguration *kubeletconfigv1beta1.KubeletConfiguration `json:"kubeletConfiguration"`
	// SeccompDefault in effect: --seccomp-default is a KubeletFlags field, not configuration,
	// and RunKubelet passes `kubeServer.KubeletFlags.SeccompDefault ||
	// kubeServer.KubeletConfiguration.SeccompDefault` to the kubelet (cmd/kubelet/app/server.go).
	SeccompDefault bool `json:"seccompDefault"`
	// HostnameOverride is --hostname-override, a KubeletFlags field (CIS 4.2.7).
	HostnameOverride string `json:"hostnameOverride"`
	// RotateKubeletServerCertificate is the feature gate in effect: RunE sets the kubelet's
	// feature gates from the configuration's featureGates merged with --feature-gates.
	RotateKubeletServerCertificate bool `json:"rotateKubeletServerCertificate"`
}

// printConfig writes the configuration as the versioned KubeletConfiguration, in JSON.
func printConfig(kubeletFlags *options.KubeletFlags, internal *kubeletconfiginternal.KubeletConfiguration) error {
	versioned := &kubeletconfigv1beta1.KubeletConfiguration{}
	if err := kubeletconfigv1beta1conversion.Convert_config_KubeletConfiguration_To_v1beta1_KubeletConfiguration(internal, versioned, nil); err != nil {
		return fmt.Errorf("converting the effective configuration to v1beta1: %w", err)
	}
	versioned.APIVersion = kubeletconfigv1beta1.SchemeGroupVersion.String()
	versioned.Kind = "KubeletConfiguration"
	out, err := json.Marshal(Output{
		KubeletConfiguration: versioned,
		SeccompDefault:       kubeletFlags.SeccompDefault || internal.SeccompDefault,
		HostnameOverride:     kubeletFlags.HostnameOverride,
		RotateKubeletServerCertificate: utilfeature.DefaultFeatureGate.Enabled(
			features.RotateKubeletServerCertificate),
	})
	if err != nil {
		return fmt.Errorf("encoding the effective configuration: %w", err)
	}
	_, err = fmt.Fprintln(os.Stdout, string(out))
	return err
}
