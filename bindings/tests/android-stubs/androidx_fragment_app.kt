package androidx.fragment.app

import android.app.Activity
import androidx.lifecycle.Lifecycle
import androidx.lifecycle.LifecycleOwner

abstract class FragmentActivity : Activity(), LifecycleOwner {
    override val lifecycle: Lifecycle get() = throw NotImplementedError()
}
