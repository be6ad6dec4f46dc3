//! wgpu device runtime for dagger.
