package engine

import (
	"fmt"

	"github.com/interlock/interlock/config"
	"github.com/interlock/interlock/inspect"
	"github.com/interlock/interlock/inspect/kubernetes"
	"github.com/interlock/interlock/inspect/postgres"
	"github.com/interlock/interlock/inspect/ssh"
	"github.com/interlock/interlock/inspect/tcp"
	"github.com/interlock/interlock/metrics"
	"github.com/interlock/interlock/model"
	"github.com/interlock/interlock/policy"
)

// buildHandlers creates one handler per protocol. Each checks the settings
// of its targets now, so a bad credential file stops the start instead of
// the first session.
func (e *Engine) buildHandlers(cfg *config.Config) error {
	// Handlers see the journal and policy through counting decorators.
	rec := metrics.Recorder{Inner: e.journal, M: e.metrics}
	pol := metrics.CountingPolicy{Inner: e.policy, M: e.metrics}
	m, err := policy.NewMasker(cfg.StateDir)
	if err != nil {
		return err
	}
	deps := inspect.Deps{Config: cfg, Journal: rec, Policy: pol, Masker: masker{m}, Logger: e.log, Events: e.metrics}
	pg, err := postgres.New(postgres.Options{Deps: deps})
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	sh, err := ssh.New(ssh.Options{Deps: deps})
	if err != nil {
		return fmt.Errorf("ssh: %w", err)
	}
	kube, err := kubernetes.New(kubernetes.Options{Deps: deps})
	if err != nil {
		return fmt.Errorf("kubernetes: %w", err)
	}
	e.life = &inspect.Lifecycle{Journal: rec, Logger: e.log,
		Panicked: func(p model.Protocol) { e.metrics.SessionPanics.WithLabelValues(string(p)).Inc() }}
	e.handler = map[model.Protocol]inspect.Handler{
		model.ProtoTCP:        &tcp.Handler{Policy: pol, Logger: e.log},
		model.ProtoPostgres:   pg,
		model.ProtoSSH:        sh,
		model.ProtoKubernetes: kube,
	}
	return nil
}

// masker adapts policy's masker to the handlers' interface (a nil plan
// must stay a nil interface).
type masker struct{ m *policy.Masker }

func (a masker) Plan(spec *model.MaskSpec, cols []model.MaskColumn) inspect.RowMasker {
	if rm := a.m.Plan(spec, cols); rm != nil {
		return rm
	}
	return nil
}

// Hash implements inspect.Masker.
func (a masker) Hash(original []byte) []byte { return a.m.Hash(original) }

// Detect implements inspect.Masker.
func (a masker) Detect(names []string, v []byte) []model.Finding { return detect(names, v) }

// Scrub implements inspect.Masker.
func (a masker) Scrub(spec *model.MaskSpec, text string) (string, bool) { return a.m.Scrub(spec, text) }

// ColumnRule implements inspect.Masker.
func (a masker) ColumnRule(spec *model.MaskSpec, table, column string) string {
	return policy.ColumnRule(spec, table, column)
}

// detect adapts policy's findings to the model's.
func detect(names []string, v []byte) []model.Finding {
	fs := policy.Detect(names, v)
	out := make([]model.Finding, len(fs))
	for i, f := range fs {
		out[i] = model.Finding{Detector: f.Detector, Start: f.Start, End: f.End}
	}
	return out
}
